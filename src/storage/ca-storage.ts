import type {
  AuditLogStore,
  CertificateLookup,
  CertificateStatusLookup,
  CrlCatalog,
  CrlLeases,
  CrlStore,
  HealthProbe,
  Housekeeping,
  InventoryStore,
  IssuanceStore,
  IssuerLifecycleStore,
  IssuerStore,
  OcspAnswerStore,
  CrossCertificateRecord,
  ProvisionerKeyStore,
  RateLimitStore,
  RenewalInfoLookup,
  RenewalWindowStore,
  RevocationLog,
  RevocationStore,
} from "./ports.js";
import type { Logger } from "pino";
import type { AuditVerifySource } from "../audit/audit-verifier.js";

/** The cross certificates between roots (a root rotation), as /roots.pem reads them. */
export interface CrossCertificateLookup {
  allCrossCertificates(): Promise<CrossCertificateRecord[]>;
}

/**
 * Every port of one CA's state, from one adapter: SQLite (sqlite/sqlite-ca-storage.ts, the
 * embedded default) or PostgreSQL (postgres/pg-ca-storage.ts, shared by replicas). The daemon and
 * its workers take what they need from here and never name an adapter; each member is the narrow
 * port its consumer stands behind (ports.ts).
 */
export interface CaStorage {
  readonly kind: "sqlite" | "postgres";
  /** Where the state is, for the log and `fleetca status`: the SQLite file, or the URL (it holds no password). */
  readonly location: string;
  /** The RA, client authentication, revocation, OCSP status reads and renewal info. */
  readonly requests: IssuanceStore & CertificateStatusLookup & CertificateLookup & RevocationStore & RenewalInfoLookup;
  readonly revocationLog: RevocationLog;
  readonly crls: CrlStore;
  readonly crlCatalog: CrlCatalog;
  readonly crlLeases: CrlLeases;
  readonly ocspAnswers: OcspAnswerStore;
  readonly rateLimits: RateLimitStore;
  readonly operations: ProvisionerKeyStore & Housekeeping & HealthProbe;
  readonly renewalWindows: RenewalWindowStore;
  readonly issuers: IssuerStore & InventoryStore;
  readonly issuerLifecycle: IssuerLifecycleStore;
  readonly audit: AuditLogStore;
  readonly crossCertificates: CrossCertificateLookup;
  /**
   * What `fleetca audit verify` reads (audit/audit-verifier.ts): the log, the inventory, and the
   * audit keys to trust, each vouched for by the CA's key store (key files, or ca_keys rows).
   */
  auditVerifySource(): AuditVerifySource;
  /**
   * Runs `work` while no other process on this storage runs exclusive work of the same name: two
   * replicas starting on an empty PostgreSQL database must not both make a root. SQLite's data
   * dir has one serving process (the serve lock), so there it simply runs.
   */
  exclusively<T>(name: string, work: () => Promise<T>): Promise<T>;
  /**
   * Replicas: calls `onRevocation` soon after another process commits a revocation (PostgreSQL
   * LISTEN/NOTIFY), on top of the revocation feed's polling. Absent for SQLite (one machine: the
   * feed's one-second poll of the file is what `fleetca revoke` relies on). `listening`: whether
   * that session is connected now (fleetca_revocation_notifications_up).
   */
  watchRevocations?(onRevocation: () => void, log: Logger): { readonly listening: boolean; stop(): Promise<void> };
  /** Resolves once every commit handed to the store is durable (SQLite's group commit); closing waits for it too. */
  flushCommits(): Promise<void>;
  close(): Promise<void>;
}
