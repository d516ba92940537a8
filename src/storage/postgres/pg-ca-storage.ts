import type { AuditFields, IntentFields } from "../../audit/audit-entry.js";
import type { RevocationReason } from "../../core/revocation-reason.js";
import type { SerialHex } from "../../core/serial.js";
import type { CaStorage } from "../ca-storage.js";
import type {
  AuditQuery,
  CrossCertificateRecord,
  StoredAuditEntry,
  AuditKeyRecord,
  AuditLogStore,
  CertificateLookup,
  CertificateRecord,
  CertificateStatusLookup,
  CertificateStatusRecord,
  CommitOutcome,
  IdempotencyRecord,
  IdempotencyScope,
  IssuanceCommit,
  IssuanceStore,
  IssuerRecord,
  RenewalInfoLookup,
  RenewalSubject,
  RevocationOutcome,
  RevocationStore,
  StoredTreeHead,
} from "../ports.js";
import type { PgAuditLog } from "./pg-audit-log.js";
import { pgAuditVerifySource } from "./pg-audit-verify-source.js";
import { PgCrlCatalog } from "./pg-crl-catalog.js";
import { PgCrlLeases } from "./pg-crl-leases.js";
import { PgCrlStore } from "./pg-crl-store.js";
import { PgIssuerLifecycle } from "./pg-issuer-lifecycle.js";
import { PgOcspStore } from "./pg-ocsp-store.js";
import { pgConnection, type PgSettings } from "./pg-pool.js";
import { RevocationNotifications } from "./pg-revocation-notifications.js";
import { PgRateLimits } from "./pg-rate-limits.js";
import { PgRenewalWindows } from "./pg-renewal-windows.js";
import { PgStore } from "./pg-store.js";
import { checkout } from "./pg-transaction.js";
import { connectRefusal } from "./pg-url-tls.js";
import { CaError, OperatorError } from "../../core/errors.js";

/** The request-path ports from PgStore, with renewal info from PgRenewalWindows. */
class PgRequestPorts implements IssuanceStore, CertificateStatusLookup, CertificateLookup, RevocationStore, RenewalInfoLookup {
  constructor(
    private readonly store: PgStore,
    private readonly windows: PgRenewalWindows,
  ) {}
  isTokenUsed(tokenId: string): Promise<boolean> {
    return this.store.isTokenUsed(tokenId);
  }
  findIdempotency(scope: IdempotencyScope, key: string, now: Date): Promise<IdempotencyRecord | null> {
    return this.store.findIdempotency(scope, key, now);
  }
  getCertificate(serial: SerialHex): Promise<CertificateRecord | null> {
    return this.store.getCertificate(serial);
  }
  commitIssuance(c: IssuanceCommit): Promise<CommitOutcome> {
    return this.store.commitIssuance(c);
  }
  recordIntent(intent: IntentFields, at: Date): Promise<"committed" | "serial_collision"> {
    return this.store.recordIntent(intent, at);
  }
  recordAudit(fields: AuditFields, at: Date): Promise<void> {
    return this.store.recordAudit(fields, at);
  }
  certificateStatus(serial: SerialHex): Promise<CertificateStatusRecord | null> {
    return this.store.certificateStatus(serial);
  }
  listIssuers(): Promise<IssuerRecord[]> {
    return this.store.listIssuers();
  }
  revokeCertificate(serial: SerialHex, revokedAt: Date, reason: RevocationReason): Promise<RevocationOutcome> {
    return this.store.revokeCertificate(serial, revokedAt, reason);
  }
  renewalSubject(serial: SerialHex): Promise<RenewalSubject | null> {
    return this.windows.renewalSubject(serial);
  }
}

/** What the daemon reads and writes of the issuance log, over PgAuditLog (append: its own transaction, in turn). */
class PgAuditLogPort implements AuditLogStore {
  constructor(
    private readonly store: PgStore,
    private readonly log: PgAuditLog,
  ) {}
  append(fields: AuditFields, at: Date): Promise<number> {
    return this.log.append(fields, at);
  }
  lastEntryOfKind(kind: string): Promise<Buffer | null> {
    return this.log.lastEntryOfKind(kind);
  }
  size(): Promise<number> {
    return this.log.size();
  }
  leafHashes(from: number, to: number): Promise<Buffer[]> {
    return this.log.leafHashes(from, to);
  }
  latestTreeHead(): Promise<StoredTreeHead | null> {
    return this.log.latestTreeHead();
  }
  addTreeHead(h: StoredTreeHead): Promise<void> {
    return this.log.addTreeHead(h);
  }
  auditKeys(): Promise<AuditKeyRecord[]> {
    return this.log.auditKeys();
  }
  addAuditKey(k: AuditKeyRecord): Promise<void> {
    return this.log.addAuditKey(k);
  }
  entries(from: number, limit: number): Promise<StoredAuditEntry[]> {
    return this.log.entries(from, limit);
  }
  entriesForSerial(serial: string): Promise<StoredAuditEntry[]> {
    return this.log.entriesForSerial(serial);
  }
  query(q: AuditQuery, limit: number): Promise<StoredAuditEntry[]> {
    return this.log.query(q, limit);
  }
  treeHeads(): Promise<StoredTreeHead[]> {
    return this.log.treeHeads();
  }
}

/**
 * PgStore.open, with a refusal the operator must act on (the server's certificate not verifying,
 * pg_hba.conf or authentication refusing) told in one line (pg-url-tls.ts, connectRefusal) rather
 * than as "retry later": every command and `fleetca serve` open the database here first, so a
 * wrong sslrootcert or a missing sslmode stops them at start with that line.
 */
async function openStore(settings: PgSettings, onIdleError?: (err: Error) => void): Promise<PgStore> {
  try {
    return await PgStore.open(settings, onIdleError ? { onIdleError } : {});
  } catch (e) {
    const line = connectRefusal(e instanceof CaError ? e.cause : e);
    throw line === null ? e : new OperatorError(line, { cause: e });
  }
}

/**
 * The PostgreSQL adapter's ports over one pool (PgStore opens it and migrates the schema): the
 * database several replicas share. Nothing of the CA's state is kept elsewhere; each replica's
 * dataDir holds only its own serving state (serve.json, the lock).
 */
export async function openPgCaStorage(settings: PgSettings, onIdleError?: (err: Error) => void): Promise<{ storage: CaStorage; store: PgStore }> {
  const store = await openStore(settings, onIdleError);
  const pool = store.pool;
  const windows = new PgRenewalWindows(pool);
  const crls = new PgCrlStore(pool);
  const u = new URL(settings.url);
  u.password = "";
  let closed = false;
  const storage: CaStorage = {
    kind: "postgres",
    location: u.toString(),
    requests: new PgRequestPorts(store, windows),
    revocationLog: store,
    crls,
    crlCatalog: new PgCrlCatalog(pool),
    crlLeases: new PgCrlLeases(pool),
    ocspAnswers: new PgOcspStore(pool),
    rateLimits: new PgRateLimits(pool),
    operations: store,
    renewalWindows: windows,
    issuers: store,
    issuerLifecycle: new PgIssuerLifecycle(pool),
    audit: new PgAuditLogPort(store, store.audit),
    auditVerifySource: () => pgAuditVerifySource(pool),
    crossCertificates: {
      async allCrossCertificates(): Promise<CrossCertificateRecord[]> {
        const r = await pool.query<{ subject_key_id: string; issuer_key_id: string; der: Buffer; not_after: number; created_at: number }>(
          "SELECT subject_key_id, issuer_key_id, der, not_after, created_at FROM cross_certificates ORDER BY created_at",
        );
        return r.rows.map((row) => ({ subjectKeyId: row.subject_key_id, issuerKeyId: row.issuer_key_id, der: row.der, notAfter: new Date(row.not_after), createdAt: new Date(row.created_at) }));
      },
    },
    async exclusively<T>(name: string, work: () => Promise<T>): Promise<T> {
      // A session-level advisory lock on a client of its own, held across `work` (which uses
      // other pooled clients); released explicitly, and by the server if this process dies.
      // checkout(): the connection ending while `work` runs (which may take a while: init signs
      // a hierarchy) must surface as the unlock's error, not as an unheard 'error' event.
      const { client, release } = await checkout(pool);
      let broken: Error | undefined;
      try {
        await client.query("SELECT pg_advisory_lock(hashtext($1))", [`fleetca:${name}`]);
        try {
          return await work();
        } finally {
          await client.query("SELECT pg_advisory_unlock(hashtext($1))", [`fleetca:${name}`]).catch((e: Error) => {
            // The session is gone, and its lock with it (the server releases a session's locks).
            broken = e;
          });
        }
      } finally {
        release(broken);
      }
    },
    watchRevocations(onRevocation, log) {
      const n = new RevocationNotifications({ connection: { ...pgConnection(settings), types: undefined }, onRevocation, log });
      n.start();
      return {
        get listening() {
          return n.listening;
        },
        stop: () => n.stop(),
      };
    },
    // Each commit is its own durable transaction (pg-store.ts): nothing is queued here.
    flushCommits: async () => {},
    async close() {
      if (closed) return;
      closed = true;
      await store.close();
    },
  };
  return { storage, store };
}
