import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { RequestListener } from "node:http";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { FleetcaConfig } from "../config/schema.js";
import { ProvisionerRegistry } from "../attestation/routing.js";
import { CertificateAuthority } from "../issuance/certificate-authority.js";
import type { Issuer } from "../issuance/issuer.js";
import { RegistrationAuthority } from "../registration/registration-authority.js";
import { NamePolicy } from "../registration/name-policy.js";
import { RateLimits, type RateLimitRules } from "../registration/rate-limits.js";
import type { BucketRule } from "../registration/token-buckets.js";
import { crlShardOf, crlUrl } from "../revocation/crl/crl-shard.js";
import { CONNECTIONS_CHECK_MS, hardenTimeouts } from "../api/listener.js";
import { connectionLimitsOf, guardConnections } from "../api/connection-guard.js";
import { toPem } from "../x509/pem.js";
import { DEFAULT_GROUP_COMMIT, type GroupCommitSettings } from "../storage/sqlite/issuance-group-commit.js";
import { builtWriterThreadScript } from "../storage/sqlite/commit-writer.js";
import type { CaMetrics } from "../metrics/ca-metrics.js";
import type { OpenedCa } from "./data-dir.js";
import { buildProvisioners } from "./provisioners.js";
import { lifecyclesFromConfig } from "../registration/provisioner-lifecycle.js";

/**
 * The API side of the CA, built the same way by the primary (`fleetca serve`) and by each API
 * worker (`listen.apiWorkers`): the CA for the current intermediate, the RA with its
 * provisioners, and the HTTPS listener with its limits.
 */

const LEAF_BACKDATE_MS = 60_000;
const TLS_MIN_VERSION = "TLSv1.2" as const;
/**
 * The API listener asks every client for a certificate but requires none (POST /v1/sign callers
 * have none yet) and lets node judge none: renew/revoke authenticate the presented cert against
 * the inventory and the injected Clock (registration/client-authentication.ts), whereas node's
 * `authorized` would use the real clock and know nothing of revocation.
 */
/** The API listener's certificate chain and key (PEM), as ServingCertificate makes them. */
export interface ServingKeyPair {
  key: string;
  cert: string;
}

export const API_TLS_OPTIONS = { minVersion: TLS_MIN_VERSION, requestCert: true, rejectUnauthorized: false } as const;

export function certificateAuthorityFor(
  config: FleetcaConfig,
  issuer: Issuer,
  clock: Clock,
  others: (keyIdHex: string) => Issuer | undefined = () => undefined,
): CertificateAuthority {
  return new CertificateAuthority(
    issuer,
    {
      maxTtlMs: config.issuance.maxTTL,
      backdateMs: LEAF_BACKDATE_MS,
      crlShard: (serial) => crlShardOf(serial, config.crl.shards),
      urls: (keyIdHex, crlShard) => ({
        crl: crlUrl(config.publicUrl, keyIdHex, crlShard),
        ocsp: `${config.publicUrl}/ocsp`,
        caIssuers: `${config.publicUrl}/intermediate.crt`,
      }),
    },
    clock,
    others,
  );
}

export async function registrationAuthorityFor(
  config: FleetcaConfig,
  /** The CA of the current intermediate: a getter, as a rotation replaces it while the RA runs. */
  ca: () => CertificateAuthority,
  dd: OpenedCa,
  deps: { clock: Clock; log: Logger; audiences: () => readonly string[]; metrics?: CaMetrics; followIssuer?: (issuerKeyId: string) => Promise<void> },
): Promise<{ ra: RegistrationAuthority; provisioners: string[]; rateLimits: RateLimits }> {
  const provisioners = await buildProvisioners(config, { keys: dd.caKeys, store: dd.storage.operations, clock: deps.clock, log: deps.log });
  // Each process keeps its own copy of the buckets and merges it into the shared database about
  // once a second (registration/token-buckets.ts); close() (awaited) merges the rest before the store closes.
  const rateLimits = new RateLimits(
    rateLimitRules(config.rateLimits),
    dd.storage.rateLimits,
    deps.clock,
    deps.log,
    deps.metrics && ((limit) => deps.metrics!.rateLimited(limit)),
  ).start();
  const ra = new RegistrationAuthority(
    new ProvisionerRegistry(provisioners),
    ca,
    dd.storage.requests,
    deps.clock,
    {
      lifecycles: lifecyclesFromConfig(config.provisioners, config.issuance, config.admins),
      minTtlMs: config.issuance.minTTL,
      idempotencyWindowMs: 24 * 3_600_000,
      namePolicy: NamePolicy.fromConfig(config.policy),
      followIssuer: deps.followIssuer,
    },
    deps.audiences,
    deps.log,
    deps.metrics && ((provisioner, kind) => deps.metrics!.certificateIssued(provisioner, kind)),
    rateLimits,
  );
  return { ra, provisioners: provisioners.map((p) => p.name), rateLimits };
}

/** config `rateLimits` (camelCase keys, `false` = off) as the RA's limits. */
function rateLimitRules(c: FleetcaConfig["rateLimits"]): RateLimitRules {
  const rule = (r: false | BucketRule): BucketRule | null => (r === false ? null : r);
  return {
    issuance_per_provisioner: rule(c.issuancePerProvisioner),
    issuance_per_subject: rule(c.issuancePerSubject),
    renewals_per_lineage: rule(c.renewalsPerLineage),
    failed_tokens_per_address: rule(c.failedTokensPerAddress),
  };
}

/**
 * The client-CA list the API's CertificateRequest names (RFC 8446 §4.2.4 certificate_authorities,
 * RFC 5246 §7.4.4): every intermediate of ours whose certificates may renew, so a client holding
 * a certificate of an older intermediate still picks it after a rotation. It only guides the
 * client's choice: ClientAuthenticator decides (rejectUnauthorized stays false).
 */
export function clientCaPems(issuers: readonly Issuer[]): string[] {
  // Revoked intermediates stay listed: their certificates may still renew onto the fresh one
  // (client-authentication.ts), which is how the kill switch moves a fleet without new tokens.
  return issuers.map((i) => toPem(i.der, "CERTIFICATE"));
}

/** The API's HTTPS server with its handshake deadline and connection caps (listen.maxConnections). */
export function createApiListener(
  config: FleetcaConfig,
  creds: ServingKeyPair,
  app: RequestListener,
  log: Logger,
  clientCas: readonly string[] = [],
  metrics?: CaMetrics,
): HttpsServer {
  const limits = connectionLimitsOf(config.listen, "api");
  const server = createHttpsServer(
    {
      key: creds.key,
      cert: creds.cert,
      ...API_TLS_OPTIONS,
      ...(clientCas.length > 0 && { ca: [...clientCas] }),
      // Node's default lets a connection that never sends a ClientHello hold a socket for 120 s.
      handshakeTimeout: limits.handshakeTimeoutMs,
      connectionsCheckingInterval: CONNECTIONS_CHECK_MS,
    },
    app,
  );
  hardenTimeouts(server, limits.handshakeTimeoutMs);
  guardConnections(server, "listen.api", limits, log);
  metrics?.countTlsHandshakes(server);
  return server;
}

/** A new serving certificate for a running API listener: the next handshakes use it, open connections keep theirs. */
export function installApiCredentials(server: HttpsServer, creds: ServingKeyPair, clientCas: readonly string[] = []): void {
  server.setSecureContext({ key: creds.key, cert: creds.cert, ...API_TLS_OPTIONS, ...(clientCas.length > 0 && { ca: [...clientCas] }) });
}

/** Group commit as every issuing process runs it, with its batches in the log. */
/**
 * How a process that issues opens its store's writes: the writer thread when running compiled
 * (commit-writer.ts), its batches and a lost thread logged.
 */
export function issuanceWrites(log: Logger): { groupCommit: GroupCommitSettings; writerThread: URL | null; onWriterLost: (err: Error) => void } {
  return {
    groupCommit: loggedGroupCommit(log),
    writerThread: builtWriterThreadScript(),
    onWriterLost: (err) => log.error({ err }, "the issuance writer thread stopped: the requests it held were refused with 503; the next request starts a new one"),
  };
}

export function loggedGroupCommit(log: Logger): GroupCommitSettings {
  return {
    ...DEFAULT_GROUP_COMMIT,
    // Once per refused batch (each request also gets its 503 and a warn line from http-errors).
    onBatch: (b) => {
      if (!b.committed) log.error({ size: b.size, ms: Math.round(b.ms), err: b.cause }, "issuance batch could not commit: its requests were refused with 503");
      else log.debug({ size: b.size, ms: Math.round(b.ms * 100) / 100 }, "issuance batch committed");
    },
  };
}
