import { createHash, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Clock } from "../core/clock.js";
import { NoCaError } from "../core/errors.js";
import type { FleetcaConfig } from "../config/schema.js";
import { DEV_KEK_FILE, KEK_PARAMS_FILE } from "../signing/kek.js";
import type { CertificateCounts, CrlSummary } from "../storage/ports.js";
import { dataDirInitialised } from "./data-dir.js";
import { openCaStorage } from "./open-ca.js";
import { liveServeState } from "./serve-state.js";

/** The internal certificates' provisioner names (api/serving-certificate.ts). */
const INTERNAL = ["fleetca-api"];

export interface CaStatus {
  dataDir: string;
  /** Where the CA's state is: the SQLite file, or the PostgreSQL URL (which holds no password). */
  storage: { type: "sqlite" | "postgres"; location: string };
  configFile: string | null;
  protection: "passphrase" | "development";
  issuers: Array<{ role: string; keyId: string; subject: string; sha256: string; notAfter: string; status: string; current: boolean }>;
  crls: Array<Omit<CrlSummary, "thisUpdate" | "nextUpdate"> & { thisUpdate: string; nextUpdate: string }>;
  certificates: CertificateCounts;
  internalCertificates: CertificateCounts;
  daemon: { running: false } | { running: true; pid: number; apiUrl: string; publicUrl: string; startedAt: string; healthz: string };
}

/**
 * `fleetca status`: what an operator asks first (issue 16): where the CA lives and how it is
 * protected, its roots and intermediates, each CRL's number and nextUpdate, how many
 * certificates are live, expiring or revoked, and whether a daemon runs and answers /healthz.
 * Reads only (no key, no passphrase; SQLite's file read-only), so it is safe on a live CA. With
 * PostgreSQL the CA is the shared database and the daemon is this replica's (its dataDir).
 */
export async function caStatus(config: FleetcaConfig, configFile: string | null, clock: Clock): Promise<CaStatus> {
  if (config.storage.type === "sqlite" && !dataDirInitialised(config.dataDir)) {
    throw new NoCaError(`no CA in ${config.dataDir}`);
  }
  const now = clock.now();
  const storage = await openCaStorage(config, { readonly: true });
  try {
    const records = await storage.issuers.listIssuers();
    // The issuing intermediate: the active, unrevoked, unexpired one activated last (live-issuers.ts).
    const current = records
      .filter((r) => r.role === "intermediate" && r.status === "active" && r.revokedAt === null && r.notAfter > now)
      .sort((a, b) => (a.activatedAt?.getTime() ?? 0) - (b.activatedAt?.getTime() ?? 0))
      .at(-1);
    // Roots first, then intermediates, each oldest first: the chain read top-down.
    const ordered = [...records].sort((a, b) => (a.role === b.role ? a.createdAt.getTime() - b.createdAt.getTime() : a.role === "root" ? -1 : 1));
    const issuers = ordered.map((r) => ({
      role: r.role,
      keyId: r.keyId,
      subject: new X509Certificate(r.der).subject.split("\n").join(", "),
      sha256: createHash("sha256").update(r.der).digest("hex"),
      notAfter: r.notAfter.toISOString(),
      status: r.revokedAt !== null ? "revoked" : r.notAfter <= now ? "expired" : r.status,
      current: r === current,
    }));
    const summary = await storage.issuers.inventorySummary(now, INTERNAL);
    return {
      dataDir: config.dataDir,
      storage: { type: storage.kind, location: storage.location },
      configFile: configFile === null ? null : resolve(configFile),
      // PostgreSQL deployments always derive the KEK from the passphrase (pg-key-store.ts).
      protection:
        storage.kind === "postgres" || (existsSync(join(config.dataDir, KEK_PARAMS_FILE)) && !existsSync(join(config.dataDir, DEV_KEK_FILE))) ? "passphrase" : "development",
      issuers,
      crls: summary.crls.map((c) => ({ ...c, thisUpdate: c.thisUpdate.toISOString(), nextUpdate: c.nextUpdate.toISOString() })),
      certificates: summary.fleet,
      internalCertificates: summary.internal,
      daemon: await daemonState(config.dataDir),
    };
  } finally {
    await storage.close();
  }
}

/** The daemon serve.json names, if its pid is alive; then its /healthz is asked. */
export async function daemonState(dataDir: string): Promise<CaStatus["daemon"]> {
  const state = liveServeState(dataDir);
  if (!state) return { running: false };
  let healthz: string;
  try {
    const r = await fetch(`${state.publicUrl}/healthz`, { signal: AbortSignal.timeout(3000) });
    healthz = `${r.status} ${(await r.text()).trim().slice(0, 200)}`;
  } catch (e) {
    healthz = `unreachable (${(e as Error).message})`;
  }
  return { running: true, pid: state.pid, apiUrl: state.apiUrl, publicUrl: state.publicUrl, startedAt: state.startedAt, healthz };
}

/** The human form: one fact per line, aligned. */
export function formatStatus(s: CaStatus): string {
  const lines = [
    `dataDir:      ${s.dataDir}`,
    ...(s.storage.type === "postgres" ? [`storage:      PostgreSQL ${s.storage.location} (shared by the replicas)`] : []),
    `config:       ${s.configFile ?? "(built-in defaults)"}`,
    `protection:   ${s.protection === "passphrase" ? "passphrase (KEK derived with scrypt; keys wrapped at rest)" : "DEVELOPMENT: no passphrase, the KEK is dataDir/kek.key (fleetca rotate kek gives it one)"}`,
    "",
    ...s.issuers.map(
      (i) => `${i.role.padEnd(12)}  ${i.keyId}  ${i.status}${i.current ? " (issuing)" : ""}  until ${i.notAfter}\n              ${i.subject}\n              SHA-256 ${i.sha256}`,
    ),
    "",
    ...(s.crls.length === 0
      ? ["CRLs:         none published yet"]
      : s.crls.map((c) => `CRL           ${c.issuerKeyId}${c.shard === null ? "" : `/${c.shard}`}  #${c.crlNumber}  ${c.entries} entries  nextUpdate ${c.nextUpdate}`)),
    "",
    `certificates: ${s.certificates.valid} valid (${s.certificates.expiringWithin24h} expiring within 24h), ${s.certificates.revoked} revoked, ${s.certificates.expired} expired`,
    `internal:     ${s.internalCertificates.valid} valid API serving certificate(s)`,
    s.daemon.running
      ? `daemon:       running, pid ${s.daemon.pid}, since ${s.daemon.startedAt}\n              api ${s.daemon.apiUrl}, public ${s.daemon.publicUrl}\n              /healthz ${s.daemon.healthz}`
      : "daemon:       not running",
  ];
  return lines.join("\n") + "\n";
}
