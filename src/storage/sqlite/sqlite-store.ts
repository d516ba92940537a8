import Database from "better-sqlite3";
import { randomUUID } from "node:crypto";
import { chmodSync, existsSync } from "node:fs";
import { NoCaError, OperatorError } from "../../core/errors.js";
import type { Sans } from "../../core/sans.js";
import type { SerialHex } from "../../core/serial.js";
import type { RevocationReason } from "../../core/revocation-reason.js";
import type {
  CertificateRecord,
  CertificateStatus,
  CertificateStatusRecord,
  CommitOutcome,
  CrlScope,
  IdempotencyRecord,
  IdempotencyScope,
  InventoryQuery,
  IssuanceCommit,
  IssuerRecord,
  ProvisionerKeyRecord,
  RevocationEvent,
  RevocationOutcome,
  RevokedPage,
  StoredCrl,
} from "../ports.js";
import type { AuditFields, IntentFields } from "../../audit/audit-entry.js";
import { SqliteAuditLog } from "./sqlite-audit-log.js";
import { DEFAULT_GROUP_COMMIT, IssuanceGroupCommit, type GroupCommitSettings } from "./issuance-group-commit.js";
import { CommitWriter } from "./commit-writer.js";
import { MIGRATIONS } from "../migrations.js";
import { storedCrlOf, type CrlRow } from "./sqlite-crl-catalog.js";

interface CertRow {
  serial: string;
  issuer_key_id: string;
  sans: string;
  subject_cn: string | null;
  not_before: number;
  not_after: number;
  der: Buffer;
  provisioner: string;
  token_id: string | null;
  status: "valid" | "revoked";
  revoked_at: number | null;
  revocation_reason: number | null;
  created_at: number;
  /** Absent when a v1 file is opened read-only (migration v2 not applied yet). */
  renewed_from?: string | null;
  /** Absent before migration v4. */
  crl_shard?: number | null;
  /** Absent before migration v13. */
  superseded_by?: string | null;
  lineage?: string | null;
  attested_at?: number | null;
  instance?: string | null;
}

/**
 * The embedded storage: one SQLite file in WAL mode with synchronous=FULL, so a COMMIT has been
 * fsynced before it returns, which is what "stored before handed out" needs on power loss.
 * The ports (ports.ts) are asynchronous; the facades next to this file (sqlite-request-ports.ts,
 * sqlite-revocation-ports.ts, sqlite-inventory-ports.ts, sqlite-operations-ports.ts, …) answer
 * them with the synchronous methods below, which the CLI, the tests and this class's own
 * transactions call directly.
 */
export class SqliteStore {
  readonly db: Database.Database;
  readonly #stmts;
  #insertCertStmt: Database.Statement | undefined;
  /** Made on the first commit: a read-only open never writes. */
  #groupCommit: IssuanceGroupCommit | undefined;
  readonly #groupCommitSettings: GroupCommitSettings;
  /** Set when the issuance writes go through a writer thread (commit-writer.ts). */
  readonly #writer: CommitWriter | undefined;

  /**
   * `writerThread`: the compiled commit-writer-thread.js (builtWriterThreadScript()); the
   * issuance writes then run on that thread's connection instead of this one's group commit.
   */
  constructor(path: string, opts: { readonly?: boolean; groupCommit?: GroupCommitSettings; writerThread?: URL | null; onWriterLost?: (err: Error) => void } = {}) {
    this.#groupCommitSettings = opts.groupCommit ?? DEFAULT_GROUP_COMMIT;
    const fresh = !existsSync(path);
    if (opts.readonly && fresh) throw new NoCaError(`no database at ${path}`);
    try {
      this.db = new Database(path, { readonly: opts.readonly ?? false });
    } catch (e) {
      throw new OperatorError(`cannot open database ${path}: ${(e as Error).message}`);
    }
    if (fresh) chmodSync(path, 0o600);
    this.db.pragma("busy_timeout = 5000");
    if (!opts.readonly) {
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = FULL");
      this.db.pragma("foreign_keys = ON");
      migrate(this.db, path);
    } else {
      assertSchemaKnown(this.db, path);
    }
    const db = this.db;
    this.#stmts = {
      tokenUsed: db.prepare("SELECT 1 FROM used_tokens WHERE token_id = ?").pluck(),
      insertToken: db.prepare(
        "INSERT INTO used_tokens (token_id, provisioner, expires_at, used_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
      ),
      serialExists: db.prepare("SELECT 1 FROM certificates WHERE serial = ?").pluck(),
      getCert: db.prepare("SELECT * FROM certificates WHERE serial = ?"),
      listIssuers: db.prepare("SELECT * FROM issuers ORDER BY created_at, key_id"),
      getProvKey: db.prepare("SELECT * FROM provisioner_keys WHERE name = ?"),
      insertProvKey: db.prepare("INSERT INTO provisioner_keys (name, kid, public_jwk, created_at) VALUES (?, ?, ?, ?)"),
      revokeCert: db.prepare(
        "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ? AND status = 'valid'",
      ),
      revocationOf: db.prepare("SELECT status, revoked_at, revocation_reason FROM certificates WHERE serial = ?"),
      pruneTokens: db.prepare("DELETE FROM used_tokens WHERE expires_at < ?"),
      pruneIdem: db.prepare("DELETE FROM idempotency_keys WHERE expires_at < ?"),
      ping: db.prepare("SELECT 1").pluck(),
    };
    if (opts.writerThread && !opts.readonly) {
      // Started after the migrations above: the thread's connection finds the schema current.
      this.#writer = new CommitWriter(
        opts.writerThread,
        { path, maxBatch: this.#groupCommitSettings.maxBatch },
        { ...(this.#groupCommitSettings.onBatch && { onBatch: this.#groupCommitSettings.onBatch }), ...(opts.onWriterLost && { onExit: opts.onWriterLost }) },
      );
    }
  }

  /** True when the issuance writes run on a writer thread. */
  get writesOffThread(): boolean {
    return this.#writer !== undefined;
  }

  /** Writes every queued commit now (shutdown: before the last tree head is signed). */
  async flushCommits(): Promise<void> {
    if (this.#writer) await this.#writer.flush();
    else if (this.db.open) this.#groupCommit?.flush();
  }

  /**
   * Commits still queued inline are written (or refused) before the connection goes, never
   * dropped. With a writer thread, `await flushCommits()` first: the thread is stopped here and
   * what it still held is refused.
   */
  close(): void {
    void this.#writer?.close();
    if (this.db.open) this.#groupCommit?.flush();
    if (this.db.open) this.db.close();
  }

  // --- IssuanceStore (synchronous reads; the port is SqliteRequestPorts) ---

  isTokenUsed(tokenId: string): boolean {
    return this.#stmts.tokenUsed.get(tokenId) !== undefined;
  }

  findIdempotency(scope: IdempotencyScope, key: string, now: Date): IdempotencyRecord | null {
    // Prepared on first use: a read-only open may meet a file from before v11's scoped columns.
    const r = this.#lazy("findIdem", "SELECT * FROM idempotency_keys WHERE provisioner = ? AND subject = ? AND key = ? AND expires_at > ?").get(
      scope.provisioner,
      scope.subject,
      key,
      now.getTime(),
    ) as
      | { provisioner: string; subject: string; key: string; request_hash: string; token_id: string | null; serial: string; expires_at: number }
      | undefined;
    if (!r) return null;
    return {
      provisioner: r.provisioner,
      subject: r.subject,
      key: r.key,
      requestHash: r.request_hash,
      tokenId: r.token_id,
      serial: r.serial as SerialHex,
      expiresAt: new Date(r.expires_at),
    };
  }

  getCertificate(serial: SerialHex): CertificateRecord | null {
    const r = this.#stmts.getCert.get(serial) as CertRow | undefined;
    return r ? certFromRow(r) : null;
  }

  /**
   * Four columns of one row as an array: a nonce OCSP answer reads this per request, and
   * getCertificate's full row (DER, SANs JSON) was 12 % of a public worker's time under nonce load.
   */
  certificateStatus(serial: SerialHex): CertificateStatusRecord | null {
    const r = this.#lazy("certificateStatus", "SELECT issuer_key_id, status, revoked_at, revocation_reason FROM certificates WHERE serial = ?").raw().get(serial) as
      | [string, CertificateStatus, number | null, number | null]
      | undefined;
    return r ? { issuerKeyId: r[0], status: r[1], revokedAt: r[2] === null ? null : new Date(r[2]), revocationReason: r[3] } : null;
  }

  /**
   * Joins the next group commit (issuance-group-commit.ts): resolves once the batch holding this
   * commit has been COMMITted (fsynced), rejects with CaError "unavailable" if it could not be.
   */
  commitIssuance(c: IssuanceCommit): Promise<CommitOutcome> {
    if (this.#writer) return this.#writer.commitIssuance(c);
    return this.#committer().commit(c);
  }

  async recordIntent(intent: IntentFields, at: Date): Promise<"committed" | "serial_collision"> {
    // Not fsynced on its own: the certificate's durable commit flushes it (issuance-group-commit.ts).
    const outcome = this.#writer
      ? await this.#writer.recordIntent(intent, at)
      : await this.#committer().commitWork(
      () => {
        if (this.audit.serialTaken(intent.serial)) return "serial_collision";
        this.audit.append(intent, at);
        return "committed";
      },
      { durable: false },
    );
    return outcome === "committed" ? "committed" : "serial_collision";
  }

  async recordAudit(fields: AuditFields, at: Date): Promise<void> {
    if (this.#writer) return this.#writer.recordAudit(fields, at);
    await this.#committer().commitWork(
      () => {
        this.audit.append(fields, at);
        return "committed";
      },
      { durable: false },
    );
  }

  #committer(): IssuanceGroupCommit {
    this.#groupCommit ??= new IssuanceGroupCommit(this.db, this.#applyIssuance, this.#groupCommitSettings);
    return this.#groupCommit;
  }

  #audit: SqliteAuditLog | undefined;

  /** The issuance log's tables; made on first use (a read-only open may predate them). */
  get audit(): SqliteAuditLog {
    this.#audit ??= new SqliteAuditLog(this.db);
    return this.#audit;
  }

  /**
   * One issuance's writes, inside the batch's transaction and its own savepoint: the group
   * committer rolls back to the savepoint whatever is not "committed", so each outcome is what
   * this commit would get alone.
   */
  readonly #applyIssuance = (c: IssuanceCommit): CommitOutcome => {
    const s = this.#stmts;
    if (s.serialExists.get(c.certificate.serial) !== undefined) return "serial_collision";
    if (c.tokenUse) {
      const r = s.insertToken.run(c.tokenUse.tokenId, c.tokenUse.provisioner, c.tokenUse.expiresAt.getTime(), c.certificate.createdAt.getTime());
      if (r.changes === 0) return "replayed";
    }
    this.#insertCert().run(certToRow(c.certificate));
    // The predecessor is superseded by this renewal, once: a second renewal of the same
    // certificate (a retry that lost the race, a copied key) finds it taken and stores nothing.
    if (c.supersedes !== undefined && this.#lazy("supersede", "UPDATE certificates SET superseded_by = ? WHERE serial = ? AND superseded_by IS NULL").run(c.certificate.serial, c.supersedes).changes === 0) {
      return "superseded";
    }
    if (c.retireInstance && c.certificate.instance) this.#retireInstance(c.certificate);
    if (c.supersedesPurpose) {
      this.#lazy(
        "supersedePurpose",
        "UPDATE certificates SET superseded_by = ? WHERE provisioner = ? AND superseded_by IS NULL AND serial <> ? AND (instance IS NULL OR instance = ?)",
      ).run(c.certificate.serial, c.certificate.provisioner, c.certificate.serial, c.certificate.instance ?? null);
    }
    if (c.idempotency) {
      const i = c.idempotency;
      const r = this.#upsertIdempotency().run(i.provisioner, i.subject, i.key, i.requestHash, i.tokenId, i.serial, i.expiresAt.getTime(), c.certificate.createdAt.getTime());
      if (r.changes === 0) return "idempotency_conflict";
    }
    if (c.audit) this.audit.append(c.audit, c.certificate.createdAt);
    return "committed";
  };

  /**
   * A new attestation of `cert.instance`: every other live certificate this provisioner bound to
   * that instance is revoked, reason superseded (RFC 5280 §5.3.1: 4), through the same
   * revocation as `fleetca revoke` (revocation log for CRLs and OCSP, issuance-log entry), inside
   * the transaction that stores the new certificate: both happen, or neither.
   */
  #retireInstance(cert: CertificateRecord): void {
    const older = this.#lazy(
      "instanceLineages",
      "SELECT serial FROM certificates WHERE provisioner = ? AND instance = ? AND status = 'valid' AND not_after >= ? AND serial <> ?",
    )
      .pluck()
      .all(cert.provisioner, cert.instance, cert.createdAt.getTime(), cert.serial) as SerialHex[];
    for (const serial of older) this.revokeCertificate(serial, cert.createdAt, 4 as RevocationReason);
  }

  /**
   * Stores a key, or takes the place of an expired row of the same scope and key that pruning has
   * not removed yet (findIdempotency already treats it as absent: with ON CONFLICT DO NOTHING the
   * stale row made a request with a never-used token fail as "replayed", issue 15). A live row
   * is left alone: no change, and the commit is an "idempotency_conflict". Expiry is judged at
   * the commit's own time (created_at), as findIdempotency judges it at the request's.
   */
  #upsertIdempotency(): Database.Statement {
    return this.#lazy(
      "upsertIdem",
      `INSERT INTO idempotency_keys (provisioner, subject, key, request_hash, token_id, serial, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (provisioner, subject, key) DO UPDATE SET
         request_hash = excluded.request_hash, token_id = excluded.token_id, serial = excluded.serial,
         expires_at = excluded.expires_at, created_at = excluded.created_at
       WHERE idempotency_keys.expires_at <= excluded.created_at`,
    );
  }

  /**
   * Prepared on first write rather than in the constructor: a read-only open (`fleetca list`,
   * the daemon's start-up probe) may meet a file whose schema predates renewed_from.
   */
  #insertCert(): Database.Statement {
    this.#insertCertStmt ??= this.db.prepare(`INSERT INTO certificates
        (serial, issuer_key_id, sans, subject_cn, not_before, not_after, der, provisioner, token_id, status, revoked_at, revocation_reason, created_at, renewed_from, crl_shard, superseded_by, lineage, attested_at, instance)
        VALUES (@serial, @issuer_key_id, @sans, @subject_cn, @not_before, @not_after, @der, @provisioner, @token_id, @status, @revoked_at, @revocation_reason, @created_at, @renewed_from, @crl_shard, @superseded_by, @lineage, @attested_at, @instance)`);
    return this.#insertCertStmt;
  }

  // --- RevocationStore (synchronous; the port is SqliteRequestPorts) ---

  revokeCertificate(serial: SerialHex, revokedAt: Date, reason: RevocationReason): RevocationOutcome {
    const s = this.#stmts;
    // One IMMEDIATE transaction: the conditional UPDATE is the atomic "valid → revoked" flip, and
    // the read that explains a no-op sees the same snapshot, so two racing revokes agree on who won.
    return this.db
      .transaction((): RevocationOutcome => {
        if (s.revokeCert.run(revokedAt.getTime(), reason, serial).changes === 1) {
          this.#lazy("logRevocation", "INSERT INTO revocation_log (serial, issuer_key_id, revoked_at, reason) SELECT serial, issuer_key_id, revoked_at, revocation_reason FROM certificates WHERE serial = ?").run(serial);
          const issuer = this.#lazy("issuerOf", "SELECT issuer_key_id FROM certificates WHERE serial = ?").pluck().get(serial) as string;
          this.audit.append({ kind: "revoked", serial, issuer, reason }, revokedAt);
          return { outcome: "revoked", revokedAt, reason };
        }
        const r = s.revocationOf.get(serial) as { status: string; revoked_at: number | null; revocation_reason: number | null } | undefined;
        if (!r) return { outcome: "not_found" };
        if (r.status !== "revoked" || r.revoked_at === null) throw new Error(`certificate ${serial} could not be revoked (status ${r.status})`);
        return { outcome: "already_revoked", revokedAt: new Date(r.revoked_at), reason: r.revocation_reason };
      })
      .immediate();
  }

  // --- RevocationLog ---

  latestRevocationSeq(): number {
    return (this.#lazy("latestSeq", "SELECT COALESCE(MAX(seq), 0) FROM revocation_log").pluck().get() as number) ?? 0;
  }

  revocationsAfter(seq: number, limit: number): RevocationEvent[] {
    const rows = this.#lazy(
      "revocationsAfter",
      `SELECT l.seq, l.serial, l.issuer_key_id, l.revoked_at, l.reason, c.crl_shard
       FROM revocation_log l JOIN certificates c ON c.serial = l.serial WHERE l.seq > ? ORDER BY l.seq LIMIT ?`,
    ).all(seq, limit) as Array<{
      seq: number;
      serial: string;
      issuer_key_id: string;
      revoked_at: number;
      reason: number | null;
      crl_shard: number | null;
    }>;
    return rows.map((r) => ({
      seq: r.seq,
      serial: r.serial as SerialHex,
      issuerKeyId: r.issuer_key_id,
      revokedAt: new Date(r.revoked_at),
      reason: r.reason,
      crlShard: r.crl_shard,
    }));
  }

  // --- CrlStore ---

  revokedPage(scope: CrlScope, now: Date, afterSerial: SerialHex | null, limit: number): RevokedPage {
    // One statement per scope kind; each walks its partial, covering index (certificates_revoked_by_serial
    // or _by_shard) in serial order from the last page's end, so every page costs O(limit), and
    // packs the page in SQL into one blob (RevokedPage): one value per page instead of a row
    // object and a string per entry, which cost more than everything else in a CRL build.
    const st =
      scope.shard === null
        ? this.#lazy("revokedPage:full", revokedPageSql("certificates_revoked_by_serial", "issuer_key_id = ?"))
        : this.#lazy("revokedPage:shard", revokedPageSql("certificates_revoked_by_shard", "issuer_key_id = ? AND crl_shard = ?"));
    const args = scope.shard === null ? [scope.issuerKeyId] : [scope.issuerKeyId, scope.shard];
    const [bytes, lastSerial, count] = st.raw().get(...args, afterSerial ?? "", now.getTime(), limit) as [Buffer | null, SerialHex | null, number];
    // unhex() yields NULL for the whole page when one serial is not hex: never a short page.
    if (count > 0 && bytes === null) throw new Error(`a revoked serial of ${scope.issuerKeyId} after ${afterSerial ?? "the start"} is not hex`);
    return { count, lastSerial, bytes: bytes ?? Buffer.alloc(0) };
  }

  countRevoked(scope: CrlScope, now: Date): number {
    const st =
      scope.shard === null
        ? this.#lazy("countRevoked:full", "SELECT COUNT(*) FROM certificates INDEXED BY certificates_revoked_by_serial WHERE issuer_key_id = ? AND status = 'revoked' AND not_after > ?")
        : this.#lazy(
            "countRevoked:shard",
            "SELECT COUNT(*) FROM certificates INDEXED BY certificates_revoked_by_shard WHERE issuer_key_id = ? AND crl_shard = ? AND status = 'revoked' AND not_after > ?",
          );
    const args = scope.shard === null ? [scope.issuerKeyId] : [scope.issuerKeyId, scope.shard];
    return st.pluck().get(...args, now.getTime()) as number;
  }

  getCrl(scope: CrlScope): StoredCrl | null {
    const r = this.#lazy("getCrl", "SELECT * FROM crls WHERE issuer_key_id = ? AND shard = ?").get(scope.issuerKeyId, scope.shard ?? -1) as
      | (CrlRow & { issuer_key_id: string; shard: number })
      | undefined;
    if (!r) return null;
    const chunks = this.#lazy("getCrlChunks", "SELECT bytes FROM crl_chunks WHERE issuer_key_id = ? AND shard = ? AND write_id = ? ORDER BY seq")
      .pluck()
      .all(r.issuer_key_id, r.shard, r.write_id) as Buffer[];
    const der = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    if (der.length !== r.der_length) throw new Error(`stored CRL of ${r.issuer_key_id}/${r.shard} is incomplete (${der.length} of ${r.der_length} octets)`);
    return storedCrlOf({ issuerKeyId: r.issuer_key_id, shard: r.shard === -1 ? null : r.shard }, r, der);
  }

  crlSummaryOf(scope: CrlScope): { crlNumber: number; entries: number } | null {
    const r = this.#lazy("crlSummaryOf", "SELECT crl_number, entries FROM crls WHERE issuer_key_id = ? AND shard = ?").get(scope.issuerKeyId, scope.shard ?? -1) as
      | { crl_number: number; entries: number }
      | undefined;
    return r ? { crlNumber: r.crl_number, entries: r.entries } : null;
  }

  /** saveCrl calls under way, and the wal_autocheckpoint they suspend (see saveCrl). */
  #crlWrites = 0;
  #autocheckpoint = 0;

  async saveCrl(s: StoredCrl): Promise<boolean> {
    const shard = s.shard ?? -1;
    const writeId = randomUUID();
    const der = Buffer.from(s.der.buffer, s.der.byteOffset, s.der.byteLength);
    // No WAL checkpoint inside the write: the chunks push the log past wal_autocheckpoint (1,000
    // pages) for any CRL over ~4 MB of WAL, and the commit that crosses it copied the whole log
    // into the database file and fsynced it, inside the CRL's publication. The checkpoint is
    // taken right after instead (below), once the CRL is stored and can be served; the commits
    // made meanwhile by this connection (issuance between two chunks) skip theirs as well.
    // (Counted: two scopes' writes may overlap, and only the last one out restores the setting.)
    if (this.#crlWrites++ === 0) {
      this.#autocheckpoint = this.db.pragma("wal_autocheckpoint", { simple: true }) as number;
      this.db.pragma("wal_autocheckpoint = 0");
    }
    try {
      return await this.#saveCrlChunks(s, shard, writeId, der);
    } finally {
      if (--this.#crlWrites === 0 && this.db.open && this.#autocheckpoint > 0) {
        this.db.pragma(`wal_autocheckpoint = ${this.#autocheckpoint}`);
        setImmediate(() => {
          // PASSIVE: never waits for a reader (a public worker streaming a CRL keeps its
          // snapshot); what it cannot copy now, a later commit's automatic checkpoint does.
          if (this.db.open) this.db.pragma("wal_checkpoint(PASSIVE)");
        });
      }
    }
  }

  async #saveCrlChunks(s: StoredCrl, shard: number, writeId: string, der: Buffer): Promise<boolean> {
    // 1. The bytes, one chunk per transaction, without waiting for fsync (step 2's does: in WAL
    //    mode one fsync of the log covers every frame before it), the event loop turning between.
    const insert = this.#lazy("insertCrlChunk", "INSERT INTO crl_chunks (issuer_key_id, shard, crl_number, write_id, seq, bytes) VALUES (?, ?, ?, ?, ?, ?)");
    for (let seq = 0, off = 0; off < der.length || seq === 0; seq++, off += CRL_CHUNK_OCTETS) {
      this.#withoutFsync(() => insert.run(s.issuerKeyId, shard, s.crlNumber, writeId, seq, der.subarray(off, off + CRL_CHUNK_OCTETS)));
      if (off + CRL_CHUNK_OCTETS < der.length) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    // 2. Switch the scope to them, durably, only if the number goes up: the INSERT for a scope's
    //    first CRL, else an UPDATE guarded by the number (RFC 5280 §5.2.3), whoever writes.
    const r = this.#lazy(
      "saveCrl",
      `INSERT INTO crls (issuer_key_id, shard, crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (issuer_key_id, shard) DO UPDATE SET crl_number = excluded.crl_number, this_update = excluded.this_update,
         next_update = excluded.next_update, entries = excluded.entries, revocation_seq = excluded.revocation_seq,
         write_id = excluded.write_id, der_length = excluded.der_length
       WHERE crls.crl_number < excluded.crl_number`,
    ).run(s.issuerKeyId, shard, s.crlNumber, s.thisUpdate.getTime(), s.nextUpdate.getTime(), s.entries, s.revocationSeq, writeId, der.length);
    // 3. The chunks no CRL will ever use (the replaced CRL, a lost race, a crash's leftovers: any
    //    write at or below the current number but the current one) go, a few at a time. A write
    //    of a higher number may still be under way in another process: its chunks stay.
    const sweep = this.#lazy(
      "sweepCrlChunks",
      `DELETE FROM crl_chunks WHERE rowid IN (SELECT c.rowid FROM crl_chunks c JOIN crls k ON k.issuer_key_id = c.issuer_key_id AND k.shard = c.shard
         WHERE c.issuer_key_id = ? AND c.shard = ? AND c.crl_number <= k.crl_number AND c.write_id <> k.write_id LIMIT 4)`,
    );
    while (this.#withoutFsync(() => sweep.run(s.issuerKeyId, shard)).changes > 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return r.changes === 1;
  }

  /**
   * Runs one statement with synchronous=NORMAL: committed and atomic (WAL), not yet fsynced. Only
   * for writes whose durability a later synchronous=FULL commit provides, or that may be lost.
   * better-sqlite3 is synchronous, so nothing else runs between the two pragmas.
   */
  #withoutFsync<T>(run: () => T): T {
    const before = this.db.pragma("synchronous", { simple: true }) as number;
    this.db.pragma("synchronous = NORMAL");
    try {
      return run();
    } finally {
      this.db.pragma(`synchronous = ${before}`);
    }
  }

  shardsRevokedAfter(issuerKeyId: string, seq: number): Array<number | null> {
    return this.#lazy(
      "shardsRevokedAfter",
      `SELECT DISTINCT c.crl_shard FROM revocation_log l JOIN certificates c ON c.serial = l.serial
       WHERE l.issuer_key_id = ? AND l.seq > ?`,
    )
      .pluck()
      .all(issuerKeyId, seq) as Array<number | null>;
  }

  crlShards(issuerKeyId: string): number[] {
    return this.#lazy("crlShards", "SELECT shard FROM crl_shards WHERE issuer_key_id = ? ORDER BY shard").pluck().all(issuerKeyId) as number[];
  }

  registerCrlShards(issuerKeyId: string, shards: readonly number[]): void {
    const st = this.#lazy("registerCrlShard", "INSERT INTO crl_shards (issuer_key_id, shard) VALUES (?, ?) ON CONFLICT DO NOTHING");
    this.db.transaction(() => {
      for (const n of shards) st.run(issuerKeyId, n);
    })();
  }

  /**
   * Statements over tables added by later migrations are prepared on first use, so a read-only
   * open of an older database file (which cannot migrate) still works for what it does have.
   */
  readonly #lazyStmts = new Map<string, Database.Statement>();
  #lazy(name: string, sql: string): Database.Statement {
    let st = this.#lazyStmts.get(name);
    if (!st) {
      st = this.db.prepare(sql);
      this.#lazyStmts.set(name, st);
    }
    return st;
  }

  // --- IssuerStore (synchronously; the port is SqliteInventoryPorts, sqlite-inventory-ports.ts) ---

  listIssuers(): IssuerRecord[] {
    return (this.#stmts.listIssuers.all() as Array<Record<string, unknown>>).map((r) => ({
      keyId: r.key_id as string,
      role: r.role as IssuerRecord["role"],
      keyName: r.key_name as string,
      parentKeyId: (r.parent_key_id as string | null) ?? null,
      der: new Uint8Array(r.der as Buffer),
      notBefore: new Date(r.not_before as number),
      notAfter: new Date(r.not_after as number),
      status: r.status as IssuerRecord["status"],
      createdAt: new Date(r.created_at as number),
      // Absent before migration v4 (a read-only open of an older file).
      revokedAt: typeof r.revoked_at === "number" ? new Date(r.revoked_at) : null,
      revocationReason: (r.revocation_reason as number | null | undefined) ?? null,
      // Absent before migration v10 (a read-only open of an older file): intermediates were then
      // activated when made.
      activatedAt:
        typeof r.activated_at === "number"
          ? new Date(r.activated_at)
          : r.activated_at === undefined && r.role === "intermediate"
            ? new Date(r.created_at as number)
            : null,
    }));
  }

  addIssuer(r: IssuerRecord): void {
    // Lazy: activated_at is migration v10's, and a read-only open of an older file must still work.
    this.#lazy(
      "insertIssuer",
      `INSERT INTO issuers (key_id, role, key_name, parent_key_id, der, not_before, not_after, status, created_at, activated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      r.keyId,
      r.role,
      r.keyName,
      r.parentKeyId,
      Buffer.from(r.der),
      r.notBefore.getTime(),
      r.notAfter.getTime(),
      r.status,
      r.createdAt.getTime(),
      r.activatedAt?.getTime() ?? null,
    );
  }

  // --- InventoryStore (synchronously; the port is SqliteInventoryPorts) ---

  listCertificates(q: InventoryQuery): CertificateRecord[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.revoked) where.push("status = 'revoked'");
    // A read-only open may meet a file the daemon has not migrated to v13 yet: nothing superseded then.
    if (!q.includeSuperseded && !q.revoked && this.#hasColumn("certificates", "superseded_by")) where.push("superseded_by IS NULL");
    if (q.expiringBefore) {
      where.push("not_after <= ?");
      args.push(q.expiringBefore.getTime());
    }
    if (q.notExpiredAt && !q.revoked) {
      where.push("not_after > ?");
      args.push(q.notExpiredAt.getTime());
    }
    const sql = `SELECT * FROM certificates ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY not_after, serial LIMIT ?`;
    args.push(q.limit ?? 1_000_000);
    return (this.db.prepare(sql).all(...args) as CertRow[]).map(certFromRow);
  }

  #hasColumn(table: string, column: string): boolean {
    return (this.db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).some((c) => c.name === column);
  }

  // --- Provisioner keys (ProvisionerKeyStore, asynchronously: sqlite-operations-ports.ts) ---

  getProvisionerKey(name: string): ProvisionerKeyRecord | null {
    const r = this.#stmts.getProvKey.get(name) as { name: string; kid: string; public_jwk: string; created_at: number } | undefined;
    return r ? { name: r.name, kid: r.kid, publicJwk: JSON.parse(r.public_jwk), createdAt: new Date(r.created_at) } : null;
  }

  addProvisionerKey(r: ProvisionerKeyRecord): void {
    this.#stmts.insertProvKey.run(r.name, r.kid, JSON.stringify(r.publicJwk), r.createdAt.getTime());
  }

  // --- Housekeeping / HealthProbe (asynchronously: sqlite-operations-ports.ts) ---

  pruneExpired(now: Date): number {
    const t = now.getTime();
    return Number(this.#stmts.pruneTokens.run(t).changes) + Number(this.#stmts.pruneIdem.run(t).changes);
  }

  ping(): boolean {
    try {
      return this.#stmts.ping.get() === 1;
    } catch {
      return false;
    }
  }
}

/**
 * One page of a CRL scope's entries as a RevokedPage (ports.ts): the subquery reads the covering
 * index in serial order, and each row's record (crl_record, migration v6: octet count, serial,
 * seconds as 16 hex digits of two's complement, reason or ff, in hex) comes from the index as
 * stored; the aggregate concatenates them and decodes the page once. A serial of odd length or
 * over 20 octets has the count ff, which no valid entry has, so one that would shift every later
 * nibble is refused by the builder at that entry. group_concat keeps the subquery's order
 * (SQLite feeds an aggregate its rows as the subquery yields them); the builder checks the order
 * of every entry, so a different order fails the build, never a CRL.
 */
function revokedPageSql(index: string, scope: string): string {
  return `SELECT unhex(group_concat(crl_record, '')), max(serial), count(*)
          FROM (SELECT serial, crl_record FROM certificates INDEXED BY ${index}
                WHERE ${scope} AND status = 'revoked' AND serial > ? AND not_after > ? ORDER BY serial LIMIT ?)`;
}

/** A stored CRL's DER is written in slices of this size (one transaction each). */
const CRL_CHUNK_OCTETS = 128 * 1024;

function certToRow(c: CertificateRecord): CertRow {
  return {
    serial: c.serial,
    issuer_key_id: c.issuerKeyId,
    sans: JSON.stringify(c.sans),
    subject_cn: c.subjectCommonName,
    not_before: c.notBefore.getTime(),
    not_after: c.notAfter.getTime(),
    der: Buffer.from(c.der),
    provisioner: c.provisioner,
    token_id: c.tokenId,
    status: c.status,
    revoked_at: c.revokedAt?.getTime() ?? null,
    revocation_reason: c.revocationReason,
    created_at: c.createdAt.getTime(),
    renewed_from: c.renewedFrom,
    crl_shard: c.crlShard,
    superseded_by: c.supersededBy ?? null,
    lineage: c.lineage ?? c.serial,
    attested_at: (c.attestedAt ?? c.createdAt).getTime(),
    instance: c.instance ?? null,
  };
}

function certFromRow(r: CertRow): CertificateRecord {
  return {
    serial: r.serial as SerialHex,
    issuerKeyId: r.issuer_key_id,
    sans: JSON.parse(r.sans) as Sans,
    subjectCommonName: r.subject_cn,
    notBefore: new Date(r.not_before),
    notAfter: new Date(r.not_after),
    der: new Uint8Array(r.der),
    provisioner: r.provisioner,
    tokenId: r.token_id,
    status: r.status,
    revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
    revocationReason: r.revocation_reason,
    createdAt: new Date(r.created_at),
    renewedFrom: (r.renewed_from ?? null) as SerialHex | null,
    crlShard: r.crl_shard ?? null,
    supersededBy: (r.superseded_by ?? null) as SerialHex | null,
    lineage: (r.lineage ?? r.serial) as SerialHex,
    attestedAt: new Date(r.attested_at ?? r.created_at),
    instance: r.instance ?? null,
  };
}

function currentVersion(db: Database.Database): number {
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
  return (db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").pluck().get() as number) ?? 0;
}

function assertSchemaKnown(db: Database.Database, path: string): void {
  const v = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").pluck().get() as number;
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  if (v > latest) throw new OperatorError(`${path} has schema v${v}, newer than this fleetca (v${latest}); upgrade fleetca`);
}

function migrate(db: Database.Database, path: string): void {
  const have = currentVersion(db);
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  if (have > latest) throw new OperatorError(`${path} has schema v${have}, newer than this fleetca (v${latest}); upgrade fleetca`);
  for (const m of MIGRATIONS) {
    if (m.version <= have) continue;
    db.transaction(() => {
      db.exec(m.sqlite);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(m.version, m.name, Date.now());
    }).immediate();
  }
}
