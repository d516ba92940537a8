import type { HealthReport } from "../api/health-check.js";
import type { FleetcaConfig } from "../config/schema.js";

/**
 * The messages between the primary (`fleetca serve`) and its public workers, over the IPC
 * channel node:cluster gives each worker: a socketpair private to the two processes. No secret
 * travels on it: a worker reads the passphrase the way the primary did (FLEETCA_PASSPHRASE,
 * which it inherits, or passphraseFile) and unwraps the intermediate key itself.
 */
export type ToWorker =
  /** The first message: what to serve, on which port (the primary's bound port after the first worker). */
  | { t: "start"; config: FleetcaConfig; port: number; worker: number; workers: number }
  /** A revocation was committed: read the revocation log now rather than at the next poll. */
  | { t: "revocations" }
  /** The primary's health (CRL publication, database, signer), the answer to a "health?". */
  | { t: "health"; id: number; report: HealthReport }
  /** Close the listener and exit. */
  | { t: "stop" };

export type FromWorker =
  /**
   * The worker's code is loaded and listens for messages: ask for "start". (cluster's "online"
   * comes before an ES module's top level has run, and a message then would be lost.)
   */
  | { t: "ready" }
  | { t: "listening"; port: number }
  /** Start-up failed; `message` is one line for the operator. */
  | { t: "failed"; message: string }
  | { t: "health?"; id: number };
