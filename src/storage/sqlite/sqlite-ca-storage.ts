import type { CaStorage } from "../ca-storage.js";
import { SqliteAuditLogPort } from "./sqlite-audit-log-port.js";
import { sqliteAuditVerifySource } from "./sqlite-audit-verify-source.js";
import { SqliteCrlCatalog } from "./sqlite-crl-catalog.js";
import { SqliteCrlLeases } from "./sqlite-crl-leases.js";
import { SqliteCrossCertificates } from "./sqlite-cross-certificates.js";
import { SqliteInventoryPorts } from "./sqlite-inventory-ports.js";
import { SqliteOcspStore } from "./sqlite-ocsp-store.js";
import { SqliteOperationsPorts } from "./sqlite-operations-ports.js";
import { SqliteRateLimits } from "./sqlite-rate-limits.js";
import { SqliteRenewalWindows } from "./sqlite-renewal-windows.js";
import { SqliteRequestPorts } from "./sqlite-request-ports.js";
import { SqliteRevocationPorts } from "./sqlite-revocation-ports.js";
import type { SqliteStore } from "./sqlite-store.js";

/**
 * The embedded store's ports: the facades over one SqliteStore (its file, its writer). Statements
 * of each are prepared when first used, as before, so a read-only open (a public worker) prepares
 * no write statement it will never run. `keysDir` holds the wrapped key files, which vouch for
 * the audit keys `fleetca audit verify` trusts.
 */
export function sqliteCaStorage(store: SqliteStore, path: string, keysDir: string): CaStorage {
  const windows = new SqliteRenewalWindows(store.db);
  const inventory = new SqliteInventoryPorts(store);
  const revocations = new SqliteRevocationPorts(store);
  const cross = new SqliteCrossCertificates(store.db);
  let closed = false;
  const lazy = <T>(make: () => T): (() => T) => {
    let v: T | undefined;
    return () => (v ??= make());
  };
  const crlCatalog = lazy(() => new SqliteCrlCatalog(store.db));
  const crlLeases = lazy(() => new SqliteCrlLeases(store.db));
  const ocspAnswers = lazy(() => new SqliteOcspStore(store.db));
  const rateLimits = lazy(() => new SqliteRateLimits(store.db));
  return {
    kind: "sqlite",
    location: path,
    requests: new SqliteRequestPorts(store, windows),
    revocationLog: revocations,
    crls: revocations,
    get crlCatalog() {
      return crlCatalog();
    },
    get crlLeases() {
      return crlLeases();
    },
    get ocspAnswers() {
      return ocspAnswers();
    },
    get rateLimits() {
      return rateLimits();
    },
    operations: new SqliteOperationsPorts(store),
    renewalWindows: windows,
    issuers: inventory,
    issuerLifecycle: inventory,
    audit: new SqliteAuditLogPort(store.audit),
    crossCertificates: { allCrossCertificates: async () => cross.all() },
    auditVerifySource: () => sqliteAuditVerifySource(store, keysDir),
    exclusively: (_name, work) => work(),
    flushCommits: () => store.flushCommits(),
    async close() {
      if (closed) return;
      closed = true;
      store.close();
    },
  };
}
