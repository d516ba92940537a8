import type pg from "pg";
import { encodeEntry, provisionerOf, sansOf, serialOf, type AuditEntry, type AuditFields } from "../../audit/audit-entry.js";
import type { AuditKeyRecord, AuditQuery, StoredAuditEntry, StoredTreeHead } from "../sqlite/sqlite-audit-log.js";
import { APPEND_LOCK } from "./pg-append-lock.js";
import { asStoreError, query, storeTransaction, type CommitWith } from "./pg-transaction.js";

const ENTRY_COLUMNS = `idx, at, kind, serial, provisioner, entry, leaf_hash AS "leafHash"`;
const HEAD_COLUMNS = `tree_size AS "treeSize", root_hash AS "rootHash", timestamp, key_name AS "keyName", key_spki AS "keySpki", signature`;

/**
 * The entry's bytes either side of its index: encodeEntry({ ...fields, v: 1, i, t }) is
 * `before ‖ decimal(i) ‖ after` for every i ≥ 0, because the entry is canonical JSON in which
 * nothing but the value of "i" depends on i. Found by encoding the entry with i = 0 and i = 1:
 * the two differ in exactly that one digit (a nested key also named "i", in an event's details,
 * is the same in both and cannot be mistaken for it).
 */
function entryAroundIndex(fields: AuditFields, at: Date): { before: Buffer; after: Buffer } {
  const base = { ...fields, v: 1 as const, t: at.getTime() };
  const zero = encodeEntry({ ...base, i: 0 } as AuditEntry);
  const one = encodeEntry({ ...base, i: 1 } as AuditEntry);
  let p = 0;
  while (p < zero.length && zero[p] === one[p]) p++;
  if (zero.length !== one.length || p === zero.length || !zero.subarray(p + 1).equals(one.subarray(p + 1))) {
    throw new Error("audit entry: the index is not one place in the encoding");
  }
  return { before: zero.subarray(0, p), after: zero.subarray(p + 1) };
}

/**
 * SQL literals made of hex digits and decimal digits only, whatever the value holds: the
 * statements below travel as one simple-query message with COMMIT (pg-transaction.ts,
 * CommitWith), which takes no parameters, so nothing of a request's text is ever SQL.
 */
function bytesSql(b: Uint8Array): string {
  return `decode('${Buffer.from(b).toString("hex")}', 'hex')`;
}
function textSql(s: string | null): string {
  return s === null ? "NULL" : `convert_from(${bytesSql(Buffer.from(s, "utf8"))}, 'UTF8')`;
}
function integerSql(n: number): string {
  if (!Number.isSafeInteger(n)) throw new Error(`audit entry: ${n} is not an integer`);
  return String(n);
}

/** The SQL condition "this serial was already announced by an intent or stored", over a serial expression. */
function serialTakenSql(serial: string): string {
  return `(EXISTS (SELECT 1 FROM audit_log WHERE serial = ${serial} AND kind = 'intent') OR EXISTS (SELECT 1 FROM certificates WHERE serial = ${serial}))`;
}

/**
 * The statements that append one issuance-log entry: take the append turn (pg-append-lock.ts),
 * then one INSERT that reads MAX(idx) + 1 and builds the entry's bytes and leaf hash from it on
 * the server: the same bytes as encodeEntry (entryAroundIndex) and the same hash as leafHash
 * (RFC 9162 §2.1.1: SHA-256 of 0x00 ‖ entry), so the Merkle tree over the same entries is
 * SqliteAuditLog's. The index is known only once the turn is granted, and this way no round trip
 * to the daemon is needed between the grant and the row.
 *
 * Two statements, not one: a READ COMMITTED statement sees what was committed when it began
 * (docs 13.2.1), so a MAX(idx) in the statement that waits for the lock would miss the previous
 * holder's row. Sent together in one simple-query message, the INSERT starts, and takes its
 * snapshot, after the lock statement has returned (postgres.c, exec_simple_query: a snapshot per
 * statement).
 *
 * With `unlessSerialTaken`, the row is inserted only if that serial was neither announced nor
 * stored (judged under the turn, so two announcements of one serial cannot both pass); the
 * INSERT then returns no row.
 */
export function auditAppendSql(fields: AuditFields, at: Date, opts: { unlessSerialTaken?: string } = {}): string {
  const { before, after } = entryAroundIndex(fields, at);
  const sans = sansOf(fields);
  const condition = opts.unlessSerialTaken === undefined ? "" : `WHERE NOT ${serialTakenSql(textSql(opts.unlessSerialTaken))}`;
  return `SELECT pg_advisory_xact_lock(${APPEND_LOCK});
INSERT INTO audit_log (idx, at, kind, serial, provisioner, subjects, entry, leaf_hash)
  SELECT n.idx, ${integerSql(at.getTime())}, ${textSql(fields.kind)}, ${textSql(serialOf(fields))}, ${textSql(provisionerOf(fields))},
         ${textSql(sans.length > 0 ? sans.join("\n") : null)}, e.entry, sha256(decode('00', 'hex') || e.entry)
  FROM (SELECT COALESCE(MAX(idx), -1) + 1 AS idx FROM audit_log) n,
       LATERAL (SELECT ${bytesSql(before)} || convert_to(n.idx::text, 'UTF8') || ${bytesSql(after)} AS entry) e
  ${condition}
  RETURNING idx`;
}

/** The leaf index the INSERT of auditAppendSql returned, or null when it appended nothing. */
function appendedIndex(results: pg.QueryResult[]): number | null {
  const inserted = results[results.length - 1];
  return (inserted?.rows[0] as { idx: number } | undefined)?.idx ?? null;
}

/**
 * Appends one issuance-log entry inside the caller's transaction, in one round trip, and returns
 * its leaf index: the PostgreSQL form of SqliteAuditLog.append. The index is gapless and indexes
 * become visible in order even with several replicas appending (pg-append-lock.ts). The turn is
 * then held until the caller's COMMIT; nothing in its transaction may take a lock after this.
 * Where the append is the transaction's last write, commitAuditEntry saves the round trip under
 * the turn.
 */
export async function appendAuditEntry(client: pg.ClientBase, fields: AuditFields, at: Date): Promise<number> {
  const results = (await client.query(auditAppendSql(fields, at))) as unknown as pg.QueryResult[];
  return appendedIndex(results)!;
}

/**
 * Appends one entry and commits the caller's transaction in the same message (CommitWith): the
 * turn is held only while the server runs the INSERT and the COMMIT (its WAL flush included, for
 * a durable one). Returns the leaf index, or null when `unlessSerialTaken` found the serial taken
 * (nothing was appended; what else the transaction wrote is committed).
 */
export async function commitAuditEntry(commitWith: CommitWith, fields: AuditFields, at: Date, opts: { unlessSerialTaken?: string } = {}): Promise<number | null> {
  return appendedIndex(await commitWith(auditAppendSql(fields, at, opts)));
}

/** True when a serial was already announced by an intent or stored: it must not be signed again. */
export async function serialTakenIn(client: pg.ClientBase | pg.Pool, serial: string): Promise<boolean> {
  const { rows } = await client.query<{ taken: boolean }>(`SELECT ${serialTakenSql("$1")} AS taken`, [serial]);
  return rows[0]!.taken;
}

/**
 * The issuance log's tables (migration v8) on PostgreSQL, with SqliteAuditLog's methods and
 * meaning, asynchronous. Each append is its own transaction here; the entries written with a
 * certificate or a revocation go through appendAuditEntry inside that transaction instead.
 */
export class PgAuditLog {
  constructor(private readonly pool: pg.Pool) {}

  /** Appends one entry at time `at` in a transaction of its own; returns its leaf index. */
  append(fields: AuditFields, at: Date): Promise<number> {
    return storeTransaction(this.pool, async (_client, commitWith) => ({ result: (await commitAuditEntry(commitWith, fields, at))!, commit: true }));
  }

  async serialTaken(serial: string): Promise<boolean> {
    try {
      return await serialTakenIn(this.pool, serial);
    } catch (e) {
      throw asStoreError(e);
    }
  }

  async size(): Promise<number> {
    const { rows } = await query<{ n: number }>(this.pool, "SELECT COALESCE(MAX(idx), -1) + 1 AS n FROM audit_log");
    return rows[0]!.n;
  }

  /** Leaf hashes [from, to) in index order. */
  async leafHashes(from: number, to: number): Promise<Buffer[]> {
    const { rows } = await query<{ h: Buffer }>(this.pool, "SELECT leaf_hash AS h FROM audit_log WHERE idx >= $1 AND idx < $2 ORDER BY idx", [from, to]);
    return rows.map((r) => r.h);
  }

  /** Up to `limit` entries from index `from`, in order. */
  async entries(from: number, limit: number): Promise<StoredAuditEntry[]> {
    const { rows } = await query<StoredAuditEntry>(this.pool, `SELECT ${ENTRY_COLUMNS} FROM audit_log WHERE idx >= $1 ORDER BY idx LIMIT $2`, [from, limit]);
    return rows;
  }

  /** The newest entry of one kind. */
  async lastEntryOfKind(kind: string): Promise<Buffer | null> {
    const { rows } = await query<{ entry: Buffer }>(this.pool, "SELECT entry FROM audit_log WHERE kind = $1 ORDER BY idx DESC LIMIT 1", [kind]);
    return rows[0]?.entry ?? null;
  }

  async entriesForSerial(serial: string): Promise<StoredAuditEntry[]> {
    const { rows } = await query<StoredAuditEntry>(this.pool, `SELECT ${ENTRY_COLUMNS} FROM audit_log WHERE serial = $1 ORDER BY idx`, [serial]);
    return rows;
  }

  /** Entries matching every given criterion, in log order (a command run by hand: a scan is fine). */
  async query(q: AuditQuery, limit: number): Promise<StoredAuditEntry[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown): string => `$${args.push(v)}`;
    if (q.serial !== undefined) where.push(`serial = ${arg(q.serial)}`);
    if (q.provisioner !== undefined) where.push(`provisioner = ${arg(q.provisioner)}`);
    // subjects is the SANs joined by newlines: a whole-line match, as SQLite's instr() over the same text.
    if (q.subject !== undefined) where.push(`strpos(E'\\n' || subjects || E'\\n', E'\\n' || ${arg(q.subject)} || E'\\n') > 0`);
    if (q.sinceMs !== undefined) where.push(`at >= ${arg(q.sinceMs)}`);
    if (q.kind !== undefined) where.push(`kind = ${arg(q.kind)}`);
    const sql = `SELECT ${ENTRY_COLUMNS} FROM audit_log ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY idx LIMIT ${arg(Math.floor(limit))}`;
    const { rows } = await query<StoredAuditEntry>(this.pool, sql, args);
    return rows;
  }

  async latestTreeHead(): Promise<StoredTreeHead | null> {
    const { rows } = await query<StoredTreeHead>(this.pool, `SELECT ${HEAD_COLUMNS} FROM audit_tree_heads ORDER BY tree_size DESC LIMIT 1`);
    return rows[0] ?? null;
  }

  async treeHeads(): Promise<StoredTreeHead[]> {
    const { rows } = await query<StoredTreeHead>(this.pool, `SELECT ${HEAD_COLUMNS} FROM audit_tree_heads ORDER BY tree_size`);
    return rows;
  }

  async addTreeHead(h: StoredTreeHead): Promise<void> {
    await query(this.pool, "INSERT INTO audit_tree_heads (tree_size, root_hash, timestamp, key_name, key_spki, signature) VALUES ($1, $2, $3, $4, $5, $6)", [
      h.treeSize,
      h.rootHash,
      h.timestamp,
      h.keyName,
      h.keySpki,
      h.signature,
    ]);
  }

  async auditKeys(): Promise<AuditKeyRecord[]> {
    const { rows } = await query<AuditKeyRecord>(this.pool, `SELECT key_name AS "keyName", key_spki AS "keySpki", created_at AS "createdAt" FROM audit_keys ORDER BY created_at, key_name`);
    return rows;
  }

  async addAuditKey(k: AuditKeyRecord): Promise<void> {
    await query(this.pool, "INSERT INTO audit_keys (key_name, key_spki, created_at) VALUES ($1, $2, $3)", [k.keyName, k.keySpki, k.createdAt]);
  }
}
