import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { SerialHex } from "../../core/serial.js";
import type { CrlScope, CrlStore, RevokedPage, StoredCrl } from "../ports.js";

/** A stored CRL's DER is written in slices of this size, as SqliteStore writes them (migration v4). */
export const CRL_CHUNK_OCTETS = 128 * 1024;

/** The crls row of a scope (migration v4); BIGINTs as numbers (openPgPool's int8 parser). */
export interface PgCrlRow {
  crl_number: number;
  this_update: number;
  next_update: number;
  entries: number;
  revocation_seq: number;
  write_id: string;
  der_length: number;
}

/** The full CRL is shard -1 in crls, crl_chunks and crl_leases (migrations v4, v14). */
export function shardColumn(scope: CrlScope): number {
  return scope.shard ?? -1;
}

/**
 * One page of a scope's entries, packed in SQL as SqliteStore's revokedPageSql does: the subquery
 * walks the partial index (certificates_revoked_by_serial or _by_shard) in serial order — byte
 * order, the column is COLLATE "C" — from the last page's end, and each row brings its crl_record
 * (migration v6: the entry's RevokedPage record in hex, a STORED column on PostgreSQL). string_agg
 * is told the order (an aggregate's input order is otherwise unspecified in PostgreSQL), and
 * decode() turns the page's hex into bytes once. A serial that is not 1–20 octets of hex makes
 * the page's hex invalid, and decode() fails the statement: never a short page.
 */
function revokedPageSql(scope: string): string {
  return `SELECT decode(string_agg(crl_record, '' ORDER BY serial), 'hex') AS bytes, max(serial) AS last, count(*)::int AS n
          FROM (SELECT serial, crl_record FROM certificates
                WHERE ${scope} AND status = 'revoked' AND serial > $2 AND not_after > $3 ORDER BY serial LIMIT $4) page`;
}
const PAGE_FULL = revokedPageSql("issuer_key_id = $1");
const PAGE_SHARD = revokedPageSql("issuer_key_id = $1 AND crl_shard = $5");

/**
 * Step 1 of a CRL write (SqliteStore.saveCrl's protocol, migration v4): the DER into crl_chunks
 * under a fresh write id, one chunk per statement (each its own transaction), so neither a
 * connection nor the event loop is held for the whole of a CRL of tens of megabytes. Nothing
 * reads these chunks until step 2 switches the scope's crls row to the write id.
 */
export async function writeCrlChunks(pool: pg.Pool, s: StoredCrl, writeId: string): Promise<void> {
  const der = Buffer.from(s.der.buffer, s.der.byteOffset, s.der.byteLength);
  for (let seq = 0, off = 0; off < der.length || seq === 0; seq++, off += CRL_CHUNK_OCTETS) {
    await pool.query("INSERT INTO crl_chunks (issuer_key_id, shard, crl_number, write_id, seq, bytes) VALUES ($1, $2, $3, $4, $5, $6)", [
      s.issuerKeyId,
      shardColumn(s),
      s.crlNumber,
      writeId,
      seq,
      der.subarray(off, off + CRL_CHUNK_OCTETS),
    ]);
  }
}

/**
 * Step 2: switches the scope to the write, only if its number goes up (RFC 5280 §5.2.3): the
 * INSERT for a scope's first CRL, else the UPDATE guarded by the number. On a conflict, PostgreSQL
 * locks the existing row and evaluates the WHERE against its latest committed version (docs,
 * INSERT "ON CONFLICT DO UPDATE"), so of two writers racing, the lower number always loses.
 * True when the scope now names this write.
 */
export async function switchCrl(db: pg.Pool | pg.PoolClient, s: StoredCrl, writeId: string): Promise<boolean> {
  const r = await db.query(
    `INSERT INTO crls (issuer_key_id, shard, crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (issuer_key_id, shard) DO UPDATE SET crl_number = excluded.crl_number, this_update = excluded.this_update,
       next_update = excluded.next_update, entries = excluded.entries, revocation_seq = excluded.revocation_seq,
       write_id = excluded.write_id, der_length = excluded.der_length
     WHERE crls.crl_number < excluded.crl_number`,
    [s.issuerKeyId, shardColumn(s), s.crlNumber, s.thisUpdate.getTime(), s.nextUpdate.getTime(), s.entries, s.revocationSeq, writeId, s.der.byteLength],
  );
  return r.rowCount === 1;
}

/**
 * Step 3: drops the chunks no CRL will ever use (the replaced CRL, a lost race, a crash's
 * leftovers: any write at or below the current number but the current one). A write of a higher
 * number may still be under way on another replica: its chunks stay. One statement: MVCC keeps
 * the deleted chunks readable by a snapshot taken before (PgCrlCatalog.openSnapshot), and nothing
 * here holds an event loop, so SQLite's few-rows-at-a-time sweep has no reason to exist here.
 */
export async function sweepCrlChunks(pool: pg.Pool, scope: CrlScope): Promise<void> {
  await pool.query(
    `DELETE FROM crl_chunks c USING crls k
     WHERE k.issuer_key_id = c.issuer_key_id AND k.shard = c.shard AND c.issuer_key_id = $1 AND c.shard = $2
       AND c.crl_number <= k.crl_number AND c.write_id <> k.write_id`,
    [scope.issuerKeyId, shardColumn(scope)],
  );
}

/** A crls row and its bytes as the port's StoredCrl. */
export function storedCrlOfRow(scope: CrlScope, r: PgCrlRow, der: Buffer): StoredCrl {
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

/**
 * CrlStore on PostgreSQL: the crls, crl_chunks, crl_shards tables and the revoked certificates,
 * over a pool from openPgPool (its int8 parser makes BIGINTs numbers). The same tables and the
 * same write protocol as SqliteStore's, so both adapters agree byte for byte on what they store.
 */
export class PgCrlStore implements CrlStore {
  constructor(private readonly pool: pg.Pool) {}

  async revokedPage(scope: CrlScope, now: Date, afterSerial: SerialHex | null, limit: number): Promise<RevokedPage> {
    let r: pg.QueryResult<{ bytes: Buffer | null; last: SerialHex | null; n: number }>;
    try {
      const args = [scope.issuerKeyId, afterSerial ?? "", now.getTime(), limit];
      r = await this.pool.query(scope.shard === null ? PAGE_FULL : PAGE_SHARD, scope.shard === null ? args : [...args, scope.shard]);
    } catch (e) {
      // 22023 invalid_parameter_value: decode() met a page whose hex is not hex (a bad serial).
      if ((e as { code?: string }).code === "22023") throw new Error(`a revoked serial of ${scope.issuerKeyId} after ${afterSerial ?? "the start"} is not hex`);
      throw e;
    }
    const { bytes, last, n } = r.rows[0]!;
    return { count: n, lastSerial: last, bytes: bytes ?? Buffer.alloc(0) };
  }

  async countRevoked(scope: CrlScope, now: Date): Promise<number> {
    const r = await this.pool.query<{ n: number }>(
      scope.shard === null
        ? "SELECT count(*)::int AS n FROM certificates WHERE issuer_key_id = $1 AND status = 'revoked' AND not_after > $2"
        : "SELECT count(*)::int AS n FROM certificates WHERE issuer_key_id = $1 AND status = 'revoked' AND not_after > $2 AND crl_shard = $3",
      scope.shard === null ? [scope.issuerKeyId, now.getTime()] : [scope.issuerKeyId, now.getTime(), scope.shard],
    );
    return r.rows[0]!.n;
  }

  async getCrl(scope: CrlScope): Promise<StoredCrl | null> {
    // One statement, so the row and its chunks come from one snapshot: a newer CRL's write that
    // commits meanwhile (and sweeps these chunks) is not seen half.
    const r = await this.pool.query<PgCrlRow & { bytes: Buffer }>(
      `SELECT k.crl_number, k.this_update, k.next_update, k.entries, k.revocation_seq, k.write_id, k.der_length, c.bytes
       FROM crls k JOIN crl_chunks c ON c.issuer_key_id = k.issuer_key_id AND c.shard = k.shard AND c.write_id = k.write_id
       WHERE k.issuer_key_id = $1 AND k.shard = $2 ORDER BY c.seq`,
      [scope.issuerKeyId, shardColumn(scope)],
    );
    if (r.rows.length === 0) {
      // No row, or a row without chunks (which the length check below reports).
      const head = await this.pool.query<{ der_length: number }>("SELECT der_length FROM crls WHERE issuer_key_id = $1 AND shard = $2", [scope.issuerKeyId, shardColumn(scope)]);
      if (head.rows.length === 0) return null;
      throw new Error(`stored CRL of ${scope.issuerKeyId}/${shardColumn(scope)} is incomplete (0 of ${head.rows[0]!.der_length} octets)`);
    }
    const row = r.rows[0]!;
    const der = r.rows.length === 1 ? row.bytes : Buffer.concat(r.rows.map((x) => x.bytes));
    if (der.length !== row.der_length) throw new Error(`stored CRL of ${scope.issuerKeyId}/${shardColumn(scope)} is incomplete (${der.length} of ${row.der_length} octets)`);
    return storedCrlOfRow(scope, row, der);
  }

  async crlSummaryOf(scope: CrlScope): Promise<{ crlNumber: number; entries: number } | null> {
    const r = await this.pool.query<{ crl_number: number; entries: number }>("SELECT crl_number, entries FROM crls WHERE issuer_key_id = $1 AND shard = $2", [
      scope.issuerKeyId,
      shardColumn(scope),
    ]);
    const row = r.rows[0];
    return row ? { crlNumber: row.crl_number, entries: row.entries } : null;
  }

  /** The bytes first, then the switch, then the sweep (see writeCrlChunks, switchCrl, sweepCrlChunks). */
  async saveCrl(s: StoredCrl): Promise<boolean> {
    const writeId = randomUUID();
    await writeCrlChunks(this.pool, s, writeId);
    const switched = await switchCrl(this.pool, s, writeId);
    await sweepCrlChunks(this.pool, s);
    return switched;
  }

  /**
   * MAX(seq) of the revocation log. The revoking transactions serialize their appends
   * (migrations.ts v3), so no row below this can still commit later.
   */
  async latestRevocationSeq(): Promise<number> {
    const r = await this.pool.query<{ seq: number }>("SELECT COALESCE(MAX(seq), 0) AS seq FROM revocation_log");
    return r.rows[0]!.seq;
  }

  async shardsRevokedAfter(issuerKeyId: string, seq: number): Promise<Array<number | null>> {
    const r = await this.pool.query<{ crl_shard: number | null }>(
      `SELECT DISTINCT c.crl_shard FROM revocation_log l JOIN certificates c ON c.serial = l.serial
       WHERE l.issuer_key_id = $1 AND l.seq > $2`,
      [issuerKeyId, seq],
    );
    return r.rows.map((x) => x.crl_shard);
  }

  async crlShards(issuerKeyId: string): Promise<number[]> {
    const r = await this.pool.query<{ shard: number }>("SELECT shard FROM crl_shards WHERE issuer_key_id = $1 ORDER BY shard", [issuerKeyId]);
    return r.rows.map((x) => x.shard);
  }

  /** One statement (all or none), as SqliteStore's one transaction. */
  async registerCrlShards(issuerKeyId: string, shards: readonly number[]): Promise<void> {
    await this.pool.query("INSERT INTO crl_shards (issuer_key_id, shard) SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING", [issuerKeyId, [...shards]]);
  }
}
