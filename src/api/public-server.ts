import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { OcspResponder } from "../revocation/ocsp/ocsp-responder.js";
import type { CaMetrics } from "../metrics/ca-metrics.js";
import { timeRequests } from "../metrics/http-request-timer.js";
import { metricsRouter } from "../metrics/metrics-endpoint.js";
import type { MetricsExposition } from "../metrics/metrics-exposition.js";
import { OcspAnswerCounter } from "../metrics/ocsp-answer-counter.js";
import { createCrlRouter, type CrlSource } from "./crl-router.js";
import { guardConnections, type ConnectionLimits } from "./connection-guard.js";
import { CONNECTIONS_CHECK_MS, hardenTimeouts } from "./listener.js";
import { createOcspHotPath } from "./public-hot-path.js";
import { createPublicApp, type PublicSources } from "./public-router.js";

export interface PublicServerParts {
  ocsp: OcspResponder;
  crls: CrlSource;
  sources: PublicSources;
  clock: Clock;
  log: Logger;
  /** config crl.interval: how long HTTP caches may keep a CRL. */
  crlIntervalMs: number;
  /** config listen.maxConnections / maxConnectionsPerClient / handshakeTimeout. */
  limits: ConnectionLimits & { handshakeTimeoutMs: number };
  /**
   * This process's metrics, counted on this listener's requests; `exposition` is what GET
   * /metrics serves here, null when config listen.metrics gives /metrics a listener of its own.
   */
  metrics?: { recorder: CaMetrics; exposition: MetricsExposition | null };
}

/**
 * The public listener (plain HTTP, RFC 5280 §4.2.1.13 / RFC 6960 Appendix A practice): OCSP on
 * node:http directly (public-hot-path.ts), everything else (CRLs, roots, /healthz) through
 * express. The same server runs in the daemon itself or in each public worker (public-worker.ts).
 */
export function createPublicServer(p: PublicServerParts): Server {
  const m = p.metrics;
  const ocspHotPath = createOcspHotPath(p.ocsp, p.clock, p.log, m && new OcspAnswerCounter(m.recorder));
  const app = createPublicApp(
    p.sources,
    p.log,
    [createCrlRouter(p.crls, p.clock, { intervalMs: p.crlIntervalMs, log: p.log }), ...(m?.exposition ? [metricsRouter(m.exposition)] : [])],
    m ? [timeRequests(m.recorder)] : [],
  );
  const server = createServer({ connectionsCheckingInterval: CONNECTIONS_CHECK_MS }, (req, res) => {
    if (!ocspHotPath(req, res)) app(req, res);
  });
  hardenTimeouts(server, p.limits.handshakeTimeoutMs);
  guardConnections(server, "listen.public", p.limits, p.log);
  return server;
}
