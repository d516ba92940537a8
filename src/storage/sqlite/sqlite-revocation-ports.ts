import type { SerialHex } from "../../core/serial.js";
import type { CrlScope, CrlStore, RevocationEvent, RevocationLog, RevokedPage, StoredCrl } from "../ports.js";
import type { SqliteStore } from "./sqlite-store.js";

/**
 * The CRL publishers' and the revocation feed's ports (ports.ts: CrlStore, RevocationLog) over
 * SQLite. They are asynchronous so that an asynchronous driver (PostgreSQL, issue 17) can
 * implement them; better-sqlite3 is synchronous, so each method runs the SqliteStore's own
 * synchronous method at once, inside the call, and returns its result as a resolved promise (as
 * sqlite-request-ports.ts does): a read happens exactly when the caller asks for it, only the
 * caller's continuation moves to a microtask. A throw of the store becomes a rejection.
 *
 * SqliteStore keeps its synchronous methods: the CLI (`fleetca crl sign-root`, init, rotations)
 * and many tests call them directly.
 */
export class SqliteRevocationPorts implements CrlStore, RevocationLog {
  readonly #store: SqliteStore;

  constructor(store: SqliteStore) {
    this.#store = store;
  }

  // --- RevocationLog (also CrlStore's latestRevocationSeq) ---

  async latestRevocationSeq(): Promise<number> {
    return this.#store.latestRevocationSeq();
  }

  async revocationsAfter(seq: number, limit: number): Promise<RevocationEvent[]> {
    return this.#store.revocationsAfter(seq, limit);
  }

  // --- CrlStore ---

  async revokedPage(scope: CrlScope, now: Date, afterSerial: SerialHex | null, limit: number): Promise<RevokedPage> {
    return this.#store.revokedPage(scope, now, afterSerial, limit);
  }

  async countRevoked(scope: CrlScope, now: Date): Promise<number> {
    return this.#store.countRevoked(scope, now);
  }

  async getCrl(scope: CrlScope): Promise<StoredCrl | null> {
    return this.#store.getCrl(scope);
  }

  async crlSummaryOf(scope: CrlScope): Promise<{ crlNumber: number; entries: number } | null> {
    return this.#store.crlSummaryOf(scope);
  }

  /** Already asynchronous on the store: it writes a large CRL in slices (sqlite-store.ts). */
  saveCrl(s: StoredCrl): Promise<boolean> {
    return this.#store.saveCrl(s);
  }

  async shardsRevokedAfter(issuerKeyId: string, seq: number): Promise<Array<number | null>> {
    return this.#store.shardsRevokedAfter(issuerKeyId, seq);
  }

  async crlShards(issuerKeyId: string): Promise<number[]> {
    return this.#store.crlShards(issuerKeyId);
  }

  async registerCrlShards(issuerKeyId: string, shards: readonly number[]): Promise<void> {
    this.#store.registerCrlShards(issuerKeyId, shards);
  }
}
