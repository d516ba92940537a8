import type Database from "better-sqlite3";
import type { CrlCatalog, CrlScope, StoredCrl } from "../ports.js";

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

/** The crls, crl_chunks and crl_shards tables (migration v4) read over a SqliteStore's handle; reads only. */
export class SqliteCrlCatalog implements CrlCatalog {
  readonly #numbers: Database.Statement;
  readonly #shards: Database.Statement;
  readonly #row: Database.Statement;
  readonly #chunk: Database.Statement;

  constructor(db: Database.Database) {
    this.#numbers = db.prepare("SELECT issuer_key_id, shard, crl_number FROM crls");
    this.#shards = db.prepare("SELECT issuer_key_id, shard FROM crl_shards");
    this.#row = db.prepare("SELECT crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length FROM crls WHERE issuer_key_id = ? AND shard = ?");
    this.#chunk = db.prepare("SELECT bytes FROM crl_chunks WHERE issuer_key_id = ? AND shard = ? AND write_id = ? AND seq = ?").pluck();
  }

  storedCrlNumbers(): Array<CrlScope & { crlNumber: number }> {
    const rows = this.#numbers.all() as Array<{ issuer_key_id: string; shard: number; crl_number: number }>;
    // shard -1 is the issuer's full CRL (sqlite-store.ts).
    return rows.map((r) => ({ issuerKeyId: r.issuer_key_id, shard: r.shard < 0 ? null : r.shard, crlNumber: r.crl_number }));
  }

  registeredShards(): Array<{ issuerKeyId: string; shard: number }> {
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
