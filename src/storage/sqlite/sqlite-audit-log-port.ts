import type { AuditFields } from "../../audit/audit-entry.js";
import type { AuditKeyRecord, AuditLogStore, AuditQuery, StoredAuditEntry, StoredTreeHead } from "../ports.js";
import type { SqliteAuditLog } from "./sqlite-audit-log.js";

/**
 * AuditLogStore (ports.ts) over the SQLite issuance log: what the daemon writes and reads of the
 * log at start-up, when it signs tree heads and when it serves the latest one. As in
 * sqlite-request-ports.ts, each method runs SqliteAuditLog's synchronous method at once, inside
 * the call, so reads and writes happen exactly when they did before the port became
 * asynchronous; a throw becomes a rejection. SqliteAuditLog keeps its synchronous methods for the
 * issuance path's transactions and the CLI's audit commands.
 */
export class SqliteAuditLogPort implements AuditLogStore {
  readonly #log: SqliteAuditLog;

  constructor(log: SqliteAuditLog) {
    this.#log = log;
  }

  async append(fields: AuditFields, at: Date): Promise<number> {
    return this.#log.append(fields, at);
  }

  async lastEntryOfKind(kind: string): Promise<Buffer | null> {
    return this.#log.lastEntryOfKind(kind);
  }

  async size(): Promise<number> {
    return this.#log.size();
  }

  async leafHashes(from: number, to: number): Promise<Buffer[]> {
    return this.#log.leafHashes(from, to);
  }

  async latestTreeHead(): Promise<StoredTreeHead | null> {
    return this.#log.latestTreeHead();
  }

  async addTreeHead(h: StoredTreeHead): Promise<void> {
    this.#log.addTreeHead(h);
  }

  async auditKeys(): Promise<AuditKeyRecord[]> {
    return this.#log.auditKeys();
  }

  async addAuditKey(k: AuditKeyRecord): Promise<void> {
    this.#log.addAuditKey(k);
  }

  async entries(from: number, limit: number): Promise<StoredAuditEntry[]> {
    return this.#log.entries(from, limit);
  }

  async entriesForSerial(serial: string): Promise<StoredAuditEntry[]> {
    return this.#log.entriesForSerial(serial);
  }

  async query(q: AuditQuery, limit: number): Promise<StoredAuditEntry[]> {
    return this.#log.query(q, limit);
  }

  async treeHeads(): Promise<StoredTreeHead[]> {
    return this.#log.treeHeads();
  }
}
