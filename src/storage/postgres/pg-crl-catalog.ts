import type pg from "pg";
import type { CrlCatalog, CrlScope, CrlSnapshot, StoredCrl, StoredCrlHead } from "../ports.js";
import { shardColumn, storedCrlOfRow, type PgCrlRow } from "./pg-crl-store.js";
import { checkout } from "./pg-transaction.js";

interface HeadRow {
  issuer_key_id: string;
  shard: number;
  crl_number: number;
  this_update: number;
  next_update: number;
  der_length: number;
}

const CHUNK_SQL = "SELECT bytes FROM crl_chunks WHERE issuer_key_id = $1 AND shard = $2 AND write_id = $3 AND seq = $4";
const HEAD_SQL = "SELECT issuer_key_id, shard, crl_number, this_update, next_update, der_length, write_id FROM crls WHERE issuer_key_id = $1 AND shard = $2";

/**
 * CrlCatalog on PostgreSQL (SqliteCrlCatalog's counterpart): reads only. A snapshot holds one
 * pooled client in a REPEATABLE READ READ ONLY transaction, whose snapshot is taken by its first
 * statement and kept to its end (docs, "Transaction Isolation"): every chunk it reads belongs to
 * the CRL its head() named, although newer CRLs are stored and the old chunks swept meanwhile
 * (MVCC keeps the deleted rows for a snapshot that can still see them).
 */
export class PgCrlCatalog implements CrlCatalog {
  constructor(private readonly pool: pg.Pool) {}

  async storedCrls(): Promise<StoredCrlHead[]> {
    const r = await this.pool.query<HeadRow>("SELECT issuer_key_id, shard, crl_number, this_update, next_update, der_length FROM crls");
    return r.rows.map(headOf);
  }

  async registeredShards(): Promise<Array<{ issuerKeyId: string; shard: number }>> {
    const r = await this.pool.query<{ issuer_key_id: string; shard: number }>("SELECT issuer_key_id, shard FROM crl_shards");
    return r.rows.map((x) => ({ issuerKeyId: x.issuer_key_id, shard: x.shard }));
  }

  /**
   * One chunk per statement, each on whichever pooled connection is free, so no connection is
   * held for the whole of a large CRL. Null when none is stored, or when a newer write replaced
   * it and swept its chunks between two reads (read again).
   */
  async readCrl(scope: CrlScope): Promise<StoredCrl | null> {
    const shard = shardColumn(scope);
    const rows = await this.pool.query<PgCrlRow>(
      "SELECT crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length FROM crls WHERE issuer_key_id = $1 AND shard = $2",
      [scope.issuerKeyId, shard],
    );
    const r = rows.rows[0];
    if (!r) return null;
    const der = Buffer.allocUnsafe(r.der_length);
    let at = 0;
    for (let seq = 0; at < r.der_length; seq++) {
      const chunk = await this.pool.query<{ bytes: Buffer }>(CHUNK_SQL, [scope.issuerKeyId, shard, r.write_id, seq]);
      const bytes = chunk.rows[0]?.bytes;
      if (!bytes || at + bytes.length > r.der_length) return null;
      bytes.copy(der, at);
      at += bytes.length;
    }
    return storedCrlOfRow(scope, r, der);
  }

  async openSnapshot(): Promise<CrlSnapshot> {
    // checkout(): a snapshot is held while a large CRL streams to a slow client; a connection the
    // server ends meanwhile must fail the next read, not end the process with an unheard 'error'.
    const { client, release } = await checkout(this.pool);
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      // The snapshot is taken by the transaction's first statement, not by BEGIN: take it now,
      // so it dates from the open, as SqliteCrlSnapshot's does.
      await client.query("SELECT 1 FROM crls LIMIT 1");
    } catch (e) {
      release(e as Error);
      throw e;
    }
    return new PgCrlSnapshot(this.pool, client, release);
  }
}

/** A REPEATABLE READ transaction on a pooled client of its own (see PgCrlCatalog). */
class PgCrlSnapshot implements CrlSnapshot {
  readonly #pool: pg.Pool;
  #client: pg.PoolClient | null;
  readonly #release: (err?: Error) => void;
  /** The write each head handed out belongs to: its chunks are (scope, write_id, seq). */
  readonly #writes = new WeakMap<StoredCrlHead, string>();

  constructor(pool: pg.Pool, client: pg.PoolClient, release: (err?: Error) => void) {
    this.#pool = pool;
    this.#client = client;
    this.#release = release;
  }

  async head(scope: CrlScope): Promise<StoredCrlHead | null> {
    const r = await (this.#client ?? this.#pool).query<HeadRow & { write_id: string }>(HEAD_SQL, [scope.issuerKeyId, shardColumn(scope)]);
    const row = r.rows[0];
    if (!row) return null;
    const head = headOf(row);
    this.#writes.set(head, row.write_id);
    return head;
  }

  reader(head: StoredCrlHead): { next(): Promise<Uint8Array | null> } {
    const writeId = this.#writes.get(head);
    if (writeId === undefined) throw new Error("a CRL head from another snapshot");
    const shard = shardColumn(head);
    let seq = 0;
    let at = 0;
    return {
      next: async () => {
        if (at >= head.derLength) return null;
        // In the transaction while it lasts; after release(), by the write, on any connection.
        const r = await (this.#client ?? this.#pool).query<{ bytes: Buffer }>(CHUNK_SQL, [head.issuerKeyId, shard, writeId, seq]);
        const bytes = r.rows[0]?.bytes;
        // Only after release(): a newer CRL was stored and this one's chunks swept.
        if (!bytes) throw new Error(`CRL #${head.crlNumber} of ${head.issuerKeyId}/${head.shard ?? "full"} was replaced and removed while it was being read`);
        if (at + bytes.length > head.derLength) throw new Error(`CRL #${head.crlNumber} of ${head.issuerKeyId} has more octets stored than its ${head.derLength}`);
        at += bytes.length;
        seq++;
        return bytes;
      },
    };
  }

  /** Ends the transaction (COMMIT of a read-only one) and gives the client back to the pool. */
  async release(): Promise<void> {
    const client = this.#client;
    if (client === null) return;
    this.#client = null;
    try {
      await client.query("COMMIT");
    } catch (e) {
      // The connection is unusable: the pool must not hand it out again.
      this.#release(e as Error);
      return;
    }
    this.#release();
  }

  /** Nothing beyond release() is held: idempotent. */
  async close(): Promise<void> {
    await this.release();
  }
}

function headOf(r: HeadRow): StoredCrlHead {
  return {
    issuerKeyId: r.issuer_key_id,
    shard: r.shard < 0 ? null : r.shard,
    crlNumber: r.crl_number,
    thisUpdate: new Date(r.this_update),
    nextUpdate: new Date(r.next_update),
    derLength: r.der_length,
  };
}
