import type { CrlScope, StoredCrl, StoredCrlHead } from "../ports.js";

/**
 * The asynchronous form of the ports ports.ts still declares synchronously (issue 17: other
 * increments are turning them async now): same names, same parameters, same meaning, each result
 * a Promise. The PostgreSQL classes implement these; once ports.ts declares the ports async,
 * `Promised<X>` becomes `X` and this file goes.
 */
export type Promised<P> = {
  [K in keyof P]: P[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : P[K];
};

/** CrlSnapshot (ports.ts), async: every read is a round trip to the database. */
export interface AsyncCrlSnapshot {
  head(scope: CrlScope): Promise<StoredCrlHead | null>;
  reader(head: StoredCrlHead): { next(): Promise<Uint8Array | null> };
  release(): Promise<void>;
  close(): Promise<void>;
}

/** CrlCatalog (ports.ts), async, its snapshots AsyncCrlSnapshot. */
export interface AsyncCrlCatalog {
  storedCrls(): Promise<StoredCrlHead[]>;
  registeredShards(): Promise<Array<{ issuerKeyId: string; shard: number }>>;
  readCrl(scope: CrlScope): Promise<StoredCrl | null>;
  openSnapshot(): Promise<AsyncCrlSnapshot>;
}
