import Database from "better-sqlite3";
import type { CrlCatalog, CrlScope, CrlSnapshot, StoredCrl, StoredCrlHead } from "../ports.js";

/** A row of the crls table (migration v4). */
export interface CrlRow {
  crl_number: number;
  this_update: number;
  next_update: number;
  entries: number;
  revocation_seq: number;
  write_id: string;
  der_length: number;
}

const CHUNK_SQL = "SELECT bytes FROM crl_chunks WHERE issuer_key_id = ? AND shard = ? AND write_id = ? AND seq = ?";

/**
 * The crls, crl_chunks and crl_shards tables (migration v4) read over a SqliteStore's handle; reads
 * only. The port is asynchronous (a PostgreSQL catalog makes a round trip per read); here each
 * read runs synchronously inside the call and its result is handed back as a resolved promise,
 * so a read happens when asked, never later. Snapshots (openSnapshot) each get a connection of their own: a read transaction belongs
 * to a connection, and one held on the shared handle would freeze what every other request of
 * the process reads (OCSP statuses, the revocation feed) at that moment.
 */
export class SqliteCrlCatalog implements CrlCatalog {
  readonly #heads: Database.Statement;
  readonly #shards: Database.Statement;
  readonly #row: Database.Statement;
  readonly #chunk: Database.Statement;
  readonly #openConnection: () => Database.Database;

  constructor(db: Database.Database, opts: { openConnection?: () => Database.Database } = {}) {
    this.#heads = db.prepare("SELECT issuer_key_id, shard, crl_number, this_update, next_update, der_length FROM crls");
    this.#shards = db.prepare("SELECT issuer_key_id, shard FROM crl_shards");
    this.#row = db.prepare("SELECT crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length FROM crls WHERE issuer_key_id = ? AND shard = ?");
    this.#chunk = db.prepare(CHUNK_SQL).pluck();
    this.#openConnection = opts.openConnection ?? (() => new Database(db.name, { readonly: true, fileMustExist: true }));
  }

  async storedCrls(): Promise<StoredCrlHead[]> {
    const rows = this.#heads.all() as Array<{ issuer_key_id: string; shard: number; crl_number: number; this_update: number; next_update: number; der_length: number }>;
    return rows.map((r) => headOf(r.issuer_key_id, r.shard, r));
  }

  async registeredShards(): Promise<Array<{ issuerKeyId: string; shard: number }>> {
    return (this.#shards.all() as Array<{ issuer_key_id: string; shard: number }>).map((r) => ({ issuerKeyId: r.issuer_key_id, shard: r.shard }));
  }

  async readCrl(scope: CrlScope): Promise<StoredCrl | null> {
    const shard = scope.shard ?? -1;
    const r = this.#row.get(scope.issuerKeyId, shard) as CrlRow | undefined;
    if (!r) return null;
    // One 128 KiB chunk per statement (saveCrl's unit), never one statement held open across
    // the yields: the connection stays free for the requests served in between.
    const der = Buffer.allocUnsafe(r.der_length);
    let at = 0;
    for (let seq = 0; at < r.der_length; seq++) {
      if (seq > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const bytes = this.#chunk.get(scope.issuerKeyId, shard, r.write_id, seq) as Buffer | undefined;
      // Gone: a newer CRL was stored and this write's chunks swept meanwhile.
      if (!bytes || at + bytes.length > r.der_length) return null;
      bytes.copy(der, at);
      at += bytes.length;
    }
    return storedCrlOf(scope, r, der);
  }

  async openSnapshot(): Promise<CrlSnapshot> {
    return new SqliteCrlSnapshot(this.#openConnection());
  }
}

/** A read transaction on a connection of its own (see SqliteCrlCatalog). */
class SqliteCrlSnapshot implements CrlSnapshot {
  readonly #db: Database.Database;
  readonly #row: Database.Statement;
  readonly #chunk: Database.Statement;
  /** The write each head handed out belongs to: its chunks are (scope, write_id, seq). */
  readonly #writes = new WeakMap<StoredCrlHead, string>();
  #inTransaction = false;

  constructor(db: Database.Database) {
    this.#db = db;
    try {
      db.pragma("busy_timeout = 5000");
      // Chunks are overflow pages read once each: a snapshot needs no more cache than that.
      db.pragma("cache_size = -256");
      this.#row = db.prepare("SELECT crl_number, this_update, next_update, der_length, write_id FROM crls WHERE issuer_key_id = ? AND shard = ?");
      this.#chunk = db.prepare(CHUNK_SQL).pluck();
      // BEGIN is deferred: the snapshot is taken by the first read (WAL: the log's end as of then).
      db.exec("BEGIN");
      this.#inTransaction = true;
      db.prepare("SELECT COUNT(*) FROM crls").pluck().get();
    } catch (e) {
      db.close();
      throw e;
    }
  }

  async head(scope: CrlScope): Promise<StoredCrlHead | null> {
    const shard = scope.shard ?? -1;
    const r = this.#row.get(scope.issuerKeyId, shard) as (Omit<CrlRow, "entries" | "revocation_seq">) | undefined;
    if (!r) return null;
    const head = headOf(scope.issuerKeyId, shard, r);
    this.#writes.set(head, r.write_id);
    return head;
  }

  reader(head: StoredCrlHead): { next(): Promise<Uint8Array | null> } {
    const writeId = this.#writes.get(head);
    if (writeId === undefined) throw new Error("a CRL head from another snapshot");
    const shard = head.shard ?? -1;
    let seq = 0;
    let at = 0;
    return {
      next: async () => {
        if (at >= head.derLength) return null;
        const bytes = this.#chunk.get(head.issuerKeyId, shard, writeId, seq) as Buffer | undefined;
        // Only after release(): the primary stored a newer CRL and swept this one's chunks.
        if (!bytes) throw new Error(`CRL #${head.crlNumber} of ${head.issuerKeyId}/${head.shard ?? "full"} was replaced and removed while it was being read`);
        if (at + bytes.length > head.derLength) throw new Error(`CRL #${head.crlNumber} of ${head.issuerKeyId} has more octets stored than its ${head.derLength}`);
        at += bytes.length;
        seq++;
        return bytes;
      },
    };
  }

  async release(): Promise<void> {
    this.#commit();
  }

  async close(): Promise<void> {
    if (!this.#db.open) return;
    try {
      this.#commit();
    } finally {
      this.#db.close();
    }
  }

  /** Synchronous, so close() frees the connection in the same call whatever release() did. */
  #commit(): void {
    if (!this.#inTransaction) return;
    this.#inTransaction = false;
    if (this.#db.open) this.#db.exec("COMMIT");
  }
}

function headOf(issuerKeyId: string, shard: number, r: { crl_number: number; this_update: number; next_update: number; der_length: number }): StoredCrlHead {
  // shard -1 is the issuer's full CRL (sqlite-store.ts).
  return {
    issuerKeyId,
    shard: shard < 0 ? null : shard,
    crlNumber: r.crl_number,
    thisUpdate: new Date(r.this_update),
    nextUpdate: new Date(r.next_update),
    derLength: r.der_length,
  };
}

/** A crls row and its bytes as the port's StoredCrl (SqliteStore.getCrl reads the same way, at once). */
export function storedCrlOf(scope: CrlScope, r: CrlRow, der: Buffer): StoredCrl {
  return {
    issuerKeyId: scope.issuerKeyId,
    shard: scope.shard,
    crlNumber: r.crl_number,
    thisUpdate: new Date(r.this_update),
    nextUpdate: new Date(r.next_update),
    entries: r.entries,
    revocationSeq: r.revocation_seq,
    der: new Uint8Array(der.buffer, der.byteOffset, der.byteLength),
  };
}
