import type pg from "pg";
import type { AuditFields, IntentFields } from "../../audit/audit-entry.js";
import type { RevocationReason } from "../../core/revocation-reason.js";
import type { SerialHex } from "../../core/serial.js";
import type {
  CertificateLookup,
  CertificateRecord,
  CertificateStatus,
  CertificateStatusLookup,
  CertificateStatusRecord,
  CommitOutcome,
  HealthProbe,
  Housekeeping,
  IdempotencyRecord,
  IdempotencyScope,
  InventoryQuery,
  InventoryStore,
  InventorySummary,
  IssuanceCommit,
  IssuanceStore,
  IssuerRecord,
  IssuerStore,
  ProvisionerKeyRecord,
  ProvisionerKeyStore,
  RevocationEvent,
  RevocationLog,
  RevocationOutcome,
  RevocationStore,
} from "../ports.js";
import { commitAuditEntry, PgAuditLog } from "./pg-audit-log.js";
import { applyIssuance } from "./pg-issuance.js";
import { insertIssuerIn } from "./pg-issuer-lifecycle.js";
import { openPgPool, type PgSettings } from "./pg-pool.js";
import { latestRevocationSeqOf, revocationsAfterOf, revokeIn } from "./pg-revocations.js";
import { CERT_SELECT, certFromRow, issuerFromRow, provisionerKeyFromRow, bytea, type PgCertRow, type PgIssuerRow } from "./pg-rows.js";
import { migratePostgres } from "./pg-schema.js";
import { pgInventorySummary } from "./pg-status.js";
import { asStoreError, checkout, query, storeTransaction } from "./pg-transaction.js";

/** How long a health probe may take in all (connection included) before it answers false. */
const PING_TIMEOUT_MS = 2_000;
/**
 * The probe, in one round trip: a server-side statement_timeout bounds the SELECT on a server that
 * accepts connections but does not answer (SET LOCAL: only this transaction, so the pooled
 * connection goes back unchanged).
 */
const PING_SQL = "BEGIN; SET LOCAL statement_timeout = 1000; SELECT 1 AS ok; COMMIT";

/**
 * The PostgreSQL storage adapter's core (issue 17): the issuance path, certificate status,
 * revocation and its log, issuers, inventory, provisioner keys, housekeeping, the health probe,
 * and the issuance log (`audit`), so that several replicas can share one database. Each method
 * has the meaning of SqliteStore's method of the same name (sqlite-store.ts), asynchronous.
 *
 * Writes that must agree across replicas are single conditional statements in READ COMMITTED
 * transactions (pg-transaction.ts); the two logs read by position are appended in turns
 * (pg-append-lock.ts). A database that cannot be reached rejects with CaError "unavailable".
 */
export class PgStore
  implements
    IssuanceStore,
    CertificateStatusLookup,
    CertificateLookup,
    RevocationStore,
    IssuerStore,
    InventoryStore,
    ProvisionerKeyStore,
    RevocationLog,
    Housekeeping,
    HealthProbe
{
  readonly pool: pg.Pool;
  /** The issuance log's tables (SqliteAuditLog's methods, asynchronous). */
  readonly audit: PgAuditLog;

  private constructor(pool: pg.Pool) {
    this.pool = pool;
    this.audit = new PgAuditLog(pool);
  }

  /**
   * Opens the pool and brings the schema up to date (pg-schema.ts: safe when replicas start at
   * once). A database that cannot be reached rejects with CaError "unavailable"; the pool is
   * closed again on any failure.
   */
  static async open(settings: PgSettings, opts: { onIdleError?: (err: Error) => void } = {}): Promise<PgStore> {
    const pool = openPgPool(settings, opts.onIdleError);
    try {
      const { client, release } = await checkout(pool);
      try {
        await migratePostgres(client);
      } finally {
        release();
      }
    } catch (e) {
      await pool.end().catch(() => {});
      throw asStoreError(e);
    }
    return new PgStore(pool);
  }

  /** Waits for the queries under way, then closes every connection. */
  async close(): Promise<void> {
    if (!this.pool.ended) await this.pool.end();
  }

  // --- IssuanceStore ---

  async isTokenUsed(tokenId: string): Promise<boolean> {
    const r = await query(this.pool, "SELECT 1 FROM used_tokens WHERE token_id = $1", [tokenId]);
    return (r.rowCount ?? 0) > 0;
  }

  async findIdempotency(scope: IdempotencyScope, key: string, now: Date): Promise<IdempotencyRecord | null> {
    const { rows } = await query<{ provisioner: string; subject: string; key: string; request_hash: string; token_id: string | null; serial: string; expires_at: number }>(
      this.pool,
      "SELECT provisioner, subject, key, request_hash, token_id, serial, expires_at FROM idempotency_keys WHERE provisioner = $1 AND subject = $2 AND key = $3 AND expires_at > $4",
      [scope.provisioner, scope.subject, key, now.getTime()],
    );
    const r = rows[0];
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

  /** Also CertificateLookup's and RevocationStore's. */
  async getCertificate(serial: SerialHex): Promise<CertificateRecord | null> {
    const { rows } = await query<PgCertRow>(this.pool, `SELECT ${CERT_SELECT} FROM certificates WHERE serial = $1`, [serial]);
    return rows[0] ? certFromRow(rows[0]) : null;
  }

  /** One durable transaction per commit (pg-issuance.ts); resolves after COMMIT returned. */
  commitIssuance(c: IssuanceCommit): Promise<CommitOutcome> {
    return storeTransaction(this.pool, async (client, commitWith) => {
      const outcome = await applyIssuance(client, c, commitWith);
      return { result: outcome, commit: outcome === "committed" };
    });
  }

  /**
   * The check and the append under the append lock, so two replicas announcing one serial at once
   * get one "committed" and one "serial_collision": one conditional INSERT sent with the COMMIT
   * (pg-audit-log.ts, commitAuditEntry), two round trips in all (BEGIN, then the append and the
   * COMMIT) and none of them while the turn is held. A taken serial commits an empty
   * transaction: nothing stored, as a rollback. Not durable on its own, as SQLite's intent
   * (issuance-group-commit.ts, commitWork): the certificate's durable COMMIT flushes the WAL
   * past this one's record before the certificate is handed out.
   */
  recordIntent(intent: IntentFields, at: Date): Promise<"committed" | "serial_collision"> {
    return storeTransaction(
      this.pool,
      async (_client, commitWith) => {
        const idx = await commitAuditEntry(commitWith, intent, at, { unlessSerialTaken: intent.serial });
        return { result: idx === null ? ("serial_collision" as const) : ("committed" as const), commit: true };
      },
      { durable: false },
    );
  }

  /** Appends one issuance-log entry; committed, not flushed, when this resolves (as SQLite's). */
  async recordAudit(fields: AuditFields, at: Date): Promise<void> {
    await storeTransaction(this.pool, async (_client, commitWith) => ({ result: await commitAuditEntry(commitWith, fields, at), commit: true }), { durable: false });
  }

  // --- CertificateStatusLookup ---

  async certificateStatus(serial: SerialHex): Promise<CertificateStatusRecord | null> {
    const { rows } = await query<{ issuer_key_id: string; status: CertificateStatus; revoked_at: number | null; revocation_reason: number | null }>(
      this.pool,
      "SELECT issuer_key_id, status, revoked_at, revocation_reason FROM certificates WHERE serial = $1",
      [serial],
    );
    const r = rows[0];
    return r ? { issuerKeyId: r.issuer_key_id, status: r.status, revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at), revocationReason: r.revocation_reason } : null;
  }

  // --- RevocationStore ---

  revokeCertificate(serial: SerialHex, revokedAt: Date, reason: RevocationReason): Promise<RevocationOutcome> {
    return storeTransaction(this.pool, async (client) => ({ result: await revokeIn(client, serial, revokedAt, reason), commit: true }));
  }

  // --- RevocationLog ---

  async latestRevocationSeq(): Promise<number> {
    try {
      return await latestRevocationSeqOf(this.pool);
    } catch (e) {
      throw asStoreError(e);
    }
  }

  async revocationsAfter(seq: number, limit: number): Promise<RevocationEvent[]> {
    try {
      return await revocationsAfterOf(this.pool, seq, limit);
    } catch (e) {
      throw asStoreError(e);
    }
  }

  // --- IssuerStore (and CertificateLookup.listIssuers) ---

  async listIssuers(): Promise<IssuerRecord[]> {
    const { rows } = await query<PgIssuerRow>(
      this.pool,
      "SELECT key_id, role, key_name, parent_key_id, der, not_before, not_after, status, created_at, revoked_at, revocation_reason, activated_at FROM issuers ORDER BY created_at, key_id",
    );
    return rows.map(issuerFromRow);
  }

  async addIssuer(r: IssuerRecord): Promise<void> {
    await this.addIssuers([r]);
  }

  async addIssuers(rs: readonly IssuerRecord[]): Promise<void> {
    await storeTransaction(this.pool, async (client) => {
      for (const r of rs) await insertIssuerIn(client, r);
      return { result: undefined, commit: true };
    });
  }

  // --- InventoryStore ---

  async listCertificates(q: InventoryQuery): Promise<CertificateRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown): string => `$${args.push(v)}`;
    if (q.revoked) where.push("status = 'revoked'");
    if (!q.includeSuperseded && !q.revoked) where.push("superseded_by IS NULL");
    if (q.expiringBefore) where.push(`not_after <= ${arg(q.expiringBefore.getTime())}`);
    if (q.notExpiredAt && !q.revoked) where.push(`not_after > ${arg(q.notExpiredAt.getTime())}`);
    const sql = `SELECT ${CERT_SELECT} FROM certificates ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY not_after, serial LIMIT ${arg(q.limit ?? 1_000_000)}`;
    const { rows } = await query<PgCertRow>(this.pool, sql, args);
    return rows.map(certFromRow);
  }

  inventorySummary(now: Date, internalProvisioners: readonly string[]): Promise<InventorySummary> {
    return pgInventorySummary(this.pool, now, internalProvisioners);
  }

  // --- ProvisionerKeyStore ---

  async getProvisionerKey(name: string): Promise<ProvisionerKeyRecord | null> {
    const { rows } = await query<{ name: string; kid: string; public_jwk: string; created_at: number }>(
      this.pool,
      "SELECT name, kid, public_jwk, created_at FROM provisioner_keys WHERE name = $1",
      [name],
    );
    return rows[0] ? provisionerKeyFromRow(rows[0]) : null;
  }

  async addProvisionerKey(r: ProvisionerKeyRecord): Promise<void> {
    await query(this.pool, "INSERT INTO provisioner_keys (name, kid, public_jwk, created_at) VALUES ($1, $2, $3, $4)", [
      r.name,
      r.kid,
      JSON.stringify(r.publicJwk),
      r.createdAt.getTime(),
    ]);
  }

  // --- Housekeeping / HealthProbe ---

  async pruneExpired(now: Date): Promise<number> {
    const t = now.getTime();
    const tokens = await query(this.pool, "DELETE FROM used_tokens WHERE expires_at < $1", [t]);
    const keys = await query(this.pool, "DELETE FROM idempotency_keys WHERE expires_at < $1", [t]);
    return (tokens.rowCount ?? 0) + (keys.rowCount ?? 0);
  }

  /** True when the database answers within PING_TIMEOUT_MS; false otherwise, never a throw. */
  async ping(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.#probe().catch(() => false), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #probe(): Promise<boolean> {
    const { client, release } = await checkout(this.pool);
    try {
      // query_timeout (a per-query option of node-postgres its typings omit): should the server never answer, the client gives up and the connection is
      // dropped (released with the error below), not returned to the pool mid-query.
      const results = (await client.query({ text: PING_SQL, query_timeout: PING_TIMEOUT_MS } as pg.QueryConfig)) as unknown as pg.QueryResult<{ ok: number }>[];
      release();
      return results[2]?.rows[0]?.ok === 1;
    } catch (e) {
      release(e as Error);
      throw e;
    }
  }
}
