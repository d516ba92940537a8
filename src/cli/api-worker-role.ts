import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { FleetcaConfig } from "../config/schema.js";
import type { IssuerLineup } from "../issuance/live-issuers.js";
import { ClientAuthenticator } from "../registration/client-authentication.js";
import { RenewalInfoService } from "../registration/renewal-info.js";
import { RevokeService } from "../revocation/revoke-service.js";
import { createApiApp } from "../api/api-router.js";
import { closeServer, listen, splitHostPort } from "../api/listener.js";
import { connectionLimitsOf } from "../api/connection-guard.js";
import { certificateAuthorityFor, clientCaPems, createApiListener, installApiCredentials, registrationAuthorityFor, type ServingKeyPair } from "./api-service.js";
import type { CaMetrics } from "../metrics/ca-metrics.js";
import { trustBundle } from "../storage/sqlite/sqlite-cross-certificates.js";
import type { OpenedCa } from "./data-dir.js";

/**
 * A worker's API role (listen.apiWorkers): the same CA, RA, client authentication and revocation
 * as the primary builds (api-service.ts), on the shared database opened read-write. What makes
 * that safe across processes is already in the database: a token id is spent by one INSERT
 * (used_tokens' key), an Idempotency-Key likewise, a serial is unique, a revocation is one
 * conditional UPDATE, and SQLite serialises the writers (WAL, busy_timeout). The serving
 * certificate comes from the primary, which renews it.
 */
export async function startApiRole(p: {
  config: FleetcaConfig;
  dd: OpenedCa;
  /** The intermediates as this worker first read them; `onIssuers` is told of every change. */
  lineup: IssuerLineup;
  clock: Clock;
  log: Logger;
  port: number;
  audiences: string[];
  credentials: ServingKeyPair;
  metrics: CaMetrics;
  /** A revocation was committed here: tell whoever publishes CRLs and OCSP answers. */
  onRevoked: () => void;
  /** Re-read the issuers table now (resolves once `onIssuers` was told of any change). */
  followIssuers: () => Promise<void>;
}): Promise<{ install(c: ServingKeyPair): void; onIssuers(l: IssuerLineup): void; close(): Promise<void> }> {
  const { config, dd, clock, log } = p;
  // Replaced when a rotation makes another intermediate current (onIssuers).
  let lineup = p.lineup;
  const answering = (k: string) => lineup.answering.find((i) => i.keyIdHex === k);
  let ca = certificateAuthorityFor(config, lineup.current, clock, answering);
  let clientCas = clientCaPems(p.lineup.answering);
  let credentials = p.credentials;
  // A renewal of a certificate from an intermediate this worker does not know yet: read the
  // issuers table before issuing (RaSettings.followIssuer), so the host is never moved back.
  const followIssuer = async (keyId: string): Promise<void> => {
    if (!answering(keyId)) await p.followIssuers();
  };
  const { ra, rateLimits } = await registrationAuthorityFor(config, () => ca, dd, { clock, log, audiences: () => p.audiences, metrics: p.metrics, followIssuer });
  // Renewal info reads the shared file: an override `fleetca renew-window` wrote is seen by every worker at once.
  const ports = dd.storage.requests;
  const clients = new ClientAuthenticator(ports, clock, config.admins, (p) => config.provisioners.some((c) => c.name === p && c.renewAfterExpiry));
  const revocations = new RevokeService(ports, clock, log, p.onRevoked);
  const renewalInfo = new RenewalInfoService(ports, clock);
  // The roots as the primary serves them (a root rotation shows at once): read per request.
  const roots = async () => trustBundle(await dd.storage.issuers.listIssuers(), await dd.storage.crossCertificates.allCrossCertificates(), clock.now());
  const app = createApiApp({ ra, clients, revocations, certificates: ports, renewalInfo, log, roots, metrics: p.metrics });
  const server = createApiListener(config, credentials, app, log, clientCas, p.metrics);
  const [host] = splitHostPort(config.listen.api);
  await listen(server, host, p.port, "listen.api", connectionLimitsOf(config.listen, "api").maxConnections);
  return {
    install: (c) => {
      credentials = c;
      installApiCredentials(server, c, clientCas);
    },
    onIssuers: (l) => {
      lineup = l;
      clients.issuersChanged();
      if (l.current.keyIdHex !== ca.issuer.keyIdHex) ca = certificateAuthorityFor(config, l.current, clock, answering);
      clientCas = clientCaPems(l.answering);
      installApiCredentials(server, credentials, clientCas);
    },
    // Requests in flight get most of the primary's stop timeout (public-workers.ts STOP_TIMEOUT_MS,
    // 5 s, after which it kills the worker) to finish and be stored.
    close: async () => {
      await closeServer(server, WORKER_STOP_GRACE_MS);
      // After the last request: what this worker took from the rate-limit buckets, stored.
      await rateLimits.close();
    },
  };
}

const WORKER_STOP_GRACE_MS = 4_000;
