import type pg from "pg";
import { encodeEntry, provisionerOf, sansOf, serialOf, type AuditEntry, type AuditFields } from "../../audit/audit-entry.js";
import { leafHash } from "../../audit/merkle.js";
import type { AuditKeyRecord, AuditQuery, StoredAuditEntry, StoredTreeHead } from "../sqlite/sqlite-audit-log.js";
import { takeAppendTurn } from "./pg-append-lock.js";
import { asStoreError, query, storeTransaction } from "./pg-transaction.js";

const ENTRY_COLUMNS = `idx, at, kind, serial, provisioner, entry, leaf_hash AS "leafHash"`;
const HEAD_COLUMNS = `tree_size AS "treeSize", root_hash AS "rootHash", timestamp, key_name AS "keyName", key_spki AS "keySpki", signature`;

/**
 * Appends one issuance-log entry inside the caller's transaction and returns its leaf index: the
 * PostgreSQL form of SqliteAuditLog.append. The index is MAX(idx) + 1 read after the append lock
 * is granted (pg-append-lock.ts), so it is gapless and indexes become visible in order even with
 * several replicas appending; the entry's bytes and leaf hash are computed exactly as SQLite's
 * (same encodeEntry, same leafHash), so the Merkle tree over the same entries is the same tree.
 * The caller commits; nothing in its transaction may take a lock after this.
 */
export async function appendAuditEntry(client: pg.ClientBase, fields: AuditFields, at: Date): Promise<number> {
  await takeAppendTurn(client);
  const { rows } = await client.query<{ next: number }>("SELECT COALESCE(MAX(idx), -1) + 1 AS next FROM audit_log");
  const idx = rows[0]!.next;
  const entry: AuditEntry = { ...fields, v: 1, i: idx, t: at.getTime() };
  const bytes = encodeEntry(entry);
  const sans = sansOf(fields);
  await client.query("INSERT INTO audit_log (idx, at, kind, serial, provisioner, subjects, entry, leaf_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", [
    idx,
    at.getTime(),
    fields.kind,
    serialOf(fields),
    provisionerOf(fields),
    sans.length > 0 ? sans.join("\n") : null,
    Buffer.from(bytes),
    leafHash(bytes),
  ]);
  return idx;
}

/** True when a serial was already announced by an intent or stored: it must not be signed again. */
export async function serialTakenIn(client: pg.ClientBase | pg.Pool, serial: string): Promise<boolean> {
  const { rowCount } = await client.query(
    "SELECT 1 FROM audit_log WHERE serial = $1 AND kind = 'intent' UNION ALL SELECT 1 FROM certificates WHERE serial = $1 LIMIT 1",
    [serial],
  );
  return (rowCount ?? 0) > 0;
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
    return storeTransaction(this.pool, async (client) => ({ result: await appendAuditEntry(client, fields, at), commit: true }));
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
