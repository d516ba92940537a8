import type Database from "better-sqlite3";
import { encodeEntry, provisionerOf, sansOf, serialOf, type AuditEntry, type AuditFields } from "../../audit/audit-entry.js";
import { leafHash } from "../../audit/merkle.js";
import type { AuditKeyRecord, AuditQuery, StoredAuditEntry, StoredTreeHead } from "../ports.js";

// The record types are the ports' (AuditLogStore); re-exported for the CLI's audit commands.
export type { AuditKeyRecord, AuditQuery, StoredAuditEntry, StoredTreeHead };

/**
 * The issuance log's tables (migration v8). `append` assigns the next leaf index inside the
 * caller's transaction: SQLite's write lock serialises writers (this process's group commit,
 * another API process, a CLI command), so two entries never get one index and the log stays
 * gapless. Outside a transaction it opens its own IMMEDIATE one.
 *
 * Synchronous, for the issuance path's transactions and the CLI; the daemon reaches it through
 * the asynchronous AuditLogStore (sqlite-audit-log-port.ts).
 */
export class SqliteAuditLog {
  readonly #stmts;

  constructor(private readonly db: Database.Database) {
    this.#stmts = {
      next: db.prepare("SELECT COALESCE(MAX(idx), -1) + 1 FROM audit_log").pluck(),
      insert: db.prepare("INSERT INTO audit_log (idx, at, kind, serial, provisioner, subjects, entry, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
      intentOrCertFor: db.prepare("SELECT 1 FROM audit_log WHERE serial = ? AND kind = 'intent' UNION ALL SELECT 1 FROM certificates WHERE serial = ? LIMIT 1").pluck(),
      size: db.prepare("SELECT COALESCE(MAX(idx), -1) + 1 FROM audit_log").pluck(),
      hashesFrom: db.prepare("SELECT leaf_hash FROM audit_log WHERE idx >= ? AND idx < ? ORDER BY idx").pluck(),
      entriesFrom: db.prepare("SELECT idx, at, kind, serial, provisioner, entry, leaf_hash AS leafHash FROM audit_log WHERE idx >= ? ORDER BY idx LIMIT ?"),
      bySerial: db.prepare("SELECT idx, at, kind, serial, provisioner, entry, leaf_hash AS leafHash FROM audit_log WHERE serial = ? ORDER BY idx"),
      latestHead: db.prepare("SELECT tree_size AS treeSize, root_hash AS rootHash, timestamp, key_name AS keyName, key_spki AS keySpki, signature FROM audit_tree_heads ORDER BY tree_size DESC LIMIT 1"),
      heads: db.prepare("SELECT tree_size AS treeSize, root_hash AS rootHash, timestamp, key_name AS keyName, key_spki AS keySpki, signature FROM audit_tree_heads ORDER BY tree_size"),
      insertHead: db.prepare("INSERT INTO audit_tree_heads (tree_size, root_hash, timestamp, key_name, key_spki, signature) VALUES (?, ?, ?, ?, ?, ?)"),
      keys: db.prepare("SELECT key_name AS keyName, key_spki AS keySpki, created_at AS createdAt FROM audit_keys ORDER BY created_at, key_name"),
      insertKey: db.prepare("INSERT INTO audit_keys (key_name, key_spki, created_at) VALUES (?, ?, ?)"),
    };
  }

  /** Appends one entry at time `at`; returns its leaf index. */
  append(fields: AuditFields, at: Date): number {
    if (!this.db.inTransaction) return this.db.transaction(() => this.append(fields, at)).immediate();
    const idx = this.#stmts.next.get() as number;
    const entry: AuditEntry = { ...fields, v: 1, i: idx, t: at.getTime() };
    const bytes = encodeEntry(entry);
    const sans = sansOf(fields);
    this.#stmts.insert.run(idx, at.getTime(), fields.kind, serialOf(fields), provisionerOf(fields), sans.length > 0 ? sans.join("\n") : null, bytes, leafHash(bytes));
    return idx;
  }

  /** True when a serial was already announced by an intent or stored: it must not be signed again. */
  serialTaken(serial: string): boolean {
    return this.#stmts.intentOrCertFor.get(serial, serial) !== undefined;
  }

  size(): number {
    return this.#stmts.size.get() as number;
  }

  /** Leaf hashes [from, to) in index order. */
  leafHashes(from: number, to: number): Buffer[] {
    return this.#stmts.hashesFrom.all(from, to) as Buffer[];
  }

  /** Up to `limit` entries from index `from`, in order. */
  entries(from: number, limit: number): StoredAuditEntry[] {
    return this.#stmts.entriesFrom.all(from, limit) as StoredAuditEntry[];
  }

  /** The newest entry of one kind (a scan from the end: kinds like config_seen are rare but recent). */
  lastEntryOfKind(kind: string): Buffer | null {
    return (this.db.prepare("SELECT entry FROM audit_log WHERE kind = ? ORDER BY idx DESC LIMIT 1").pluck().get(kind) as Buffer | undefined) ?? null;
  }

  entriesForSerial(serial: string): StoredAuditEntry[] {
    return this.#stmts.bySerial.all(serial) as StoredAuditEntry[];
  }

  /** Entries matching every given criterion, in log order (a command run by hand: a scan is fine). */
  query(q: AuditQuery, limit: number): StoredAuditEntry[] {
    const where: string[] = [];
    const args: Record<string, string | number> = {};
    if (q.serial !== undefined) (where.push("serial = @serial"), (args.serial = q.serial));
    if (q.provisioner !== undefined) (where.push("provisioner = @provisioner"), (args.provisioner = q.provisioner));
    if (q.subject !== undefined) (where.push("instr(char(10) || subjects || char(10), char(10) || @subject || char(10)) > 0"), (args.subject = q.subject));
    if (q.sinceMs !== undefined) (where.push("at >= @since"), (args.since = q.sinceMs));
    if (q.kind !== undefined) (where.push("kind = @kind"), (args.kind = q.kind));
    const sql = `SELECT idx, at, kind, serial, provisioner, entry, leaf_hash AS leafHash FROM audit_log ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY idx LIMIT ${Math.floor(limit)}`;
    return this.db.prepare(sql).all(args) as StoredAuditEntry[];
  }

  latestTreeHead(): StoredTreeHead | null {
    return (this.#stmts.latestHead.get() as StoredTreeHead | undefined) ?? null;
  }

  treeHeads(): StoredTreeHead[] {
    return this.#stmts.heads.all() as StoredTreeHead[];
  }

  addTreeHead(h: StoredTreeHead): void {
    this.#stmts.insertHead.run(h.treeSize, h.rootHash, h.timestamp, h.keyName, h.keySpki, h.signature);
  }

  auditKeys(): AuditKeyRecord[] {
    return this.#stmts.keys.all() as AuditKeyRecord[];
  }

  addAuditKey(k: AuditKeyRecord): void {
    this.#stmts.insertKey.run(k.keyName, k.keySpki, k.createdAt);
  }
}
