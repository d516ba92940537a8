import type { HealthReport } from "../api/health-check.js";
import type { FleetcaConfig } from "../config/schema.js";
import type { MetricsReport } from "../metrics/ca-metrics.js";

/**
 * The messages between the primary (`fleetca serve`) and its workers, over the IPC channel
 * node:cluster gives each worker: a socketpair private to the two processes. No CA secret travels
 * on it: a worker reads the passphrase the way the primary did (FLEETCA_PASSPHRASE, which it
 * inherits, or passphraseFile) and unwraps the intermediate key itself. The API listener's own
 * serving key does (see PublicWorkers.sendApiCredentials for why).
 */
/*
 * Every message here has a `t`. prom-client's own cluster messages (`{ type: "prom-client:…" }`)
 * are never sent: fleetca uses only AggregatorRegistry.aggregate, never an AggregatorRegistry
 * instance, which is what installs them (metrics/metrics-exposition.ts); were they sent, every
 * handler here ignores a message whose `t` it does not know.
 */
export type ToWorker =
  /** The first message: which listeners to serve, on which bound ports. */
  | {
      t: "start";
      config: FleetcaConfig;
      worker: number;
      /** Serve the public listener; `workers` of them share the OCSP signing budget. */
      public?: { port: number; workers: number };
      /** Serve the API listener. */
      api?: { port: number; audiences: string[]; credentials: { key: string; cert: string } };
    }
  /** The API's serving certificate was renewed. */
  | { t: "api-credentials"; key: string; cert: string }
  /** A revocation was committed: read the revocation log now rather than at the next poll. */
  | { t: "revocations" }
  /** The primary's health (CRL publication, database, signer), the answer to a "health?". */
  | { t: "health"; id: number; report: HealthReport }
  /** Close the listener and exit. */
  | { t: "stop" }
  /** Send this process's metrics ("metrics-report"), for a scrape the primary is merging. */
  | { t: "metrics-report?"; id: number }
  /** The whole daemon's metrics (Prometheus text), the answer to a "metrics?"; null when they could not be gathered. */
  | { t: "metrics"; id: number; text: string | null };

export type FromWorker =
  /**
   * The worker's code is loaded and listens for messages: ask for "start". (cluster's "online"
   * comes before an ES module's top level has run, and a message then would be lost.)
   */
  | { t: "ready" }
  | { t: "listening" }
  /** A revocation was committed through this worker's API: the primary reads the revocation log now. */
  | { t: "revoked" }
  /**
   * Start-up failed; `message` is one line for the operator. `kekMismatch`: the worker's
   * passphrase does not open the keys (the KEK was rotated since the daemon started).
   */
  | { t: "failed"; message: string; kekMismatch?: boolean }
  | { t: "health?"; id: number }
  /** GET /metrics reached this worker: the primary merges every process's report and answers "metrics". */
  | { t: "metrics?"; id: number }
  | { t: "metrics-report"; id: number; report: MetricsReport };
