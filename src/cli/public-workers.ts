import cluster, { type Worker } from "node:cluster";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import type { HealthReport } from "../api/health-check.js";
import type { TlsCredentials } from "../api/serving-certificate.js";
import type { FleetcaConfig } from "../config/schema.js";
import { OperatorError } from "../core/errors.js";
import { KekMismatchError } from "../signing/kek.js";
import type { MetricsReport } from "../metrics/ca-metrics.js";
import type { FromWorker, ToWorker } from "./public-worker-protocol.js";

const WORKER_SCRIPT = fileURLToPath(new URL("./public-worker.js", import.meta.url));
/** A worker that does not report its listener within this long failed to start. */
const START_TIMEOUT_MS = 60_000;
/** A worker asked to stop that is still there after this long is killed. */
const STOP_TIMEOUT_MS = 5_000;
/** Restart back-off after a worker dies: doubles up to the cap, back to the start once a worker lived a minute. */
const RESTART_FIRST_MS = 500;
const RESTART_MAX_MS = 30_000;
const STABLE_MS = 60_000;
/** A scrape leaves out a worker whose metrics take longer than this (a worker busy for that long is itself news). */
const METRICS_REPORT_TIMEOUT_MS = 2_000;

/** The API listener as the workers serve it (listen.apiWorkers). */
export interface ApiListenerSpec {
  host: string;
  port: number;
  /** The `aud` values a bootstrap token may carry (they name the bound port). */
  audiences: string[];
  /** The serving certificate now: a worker gets it at start and again after each renewal. */
  credentials: () => TlsCredentials;
}

/**
 * The primary's side of the workers (config listen.publicWorkers, listen.apiWorkers): forks them
 * with node:cluster, which shares each listener's socket and hands its connections to the
 * workers in turn (round-robin, node's default on Linux), so OCSP, CRL and API requests use
 * every core while the primary keeps CRL signing, pre-signing and the serving certificate.
 * Worker i serves the public listener when i < publicWorkers and the API when i < apiWorkers:
 * one process per core does both. Why processes and not worker threads: docs/benchmarks.md
 * ("both cores"). A worker that dies is logged at error level and started again with a
 * back-off; a shortfall is a /healthz warning.
 */
export class PublicWorkers {
  readonly #workers = new Map<number, Worker>();
  readonly #startedAt = new Map<number, number>();
  readonly #restarts = new Map<number, NodeJS.Timeout>();
  #backoffMs = RESTART_FIRST_MS;
  /** Scrapes waiting for the workers' reports: what arrived so far, and the call for the last one. */
  readonly #gathering = new Map<number, { reports: MetricsReport[]; waiting: Set<Worker>; done: () => void }>();
  #nextGatherId = 1;
  #stopping = false;

  readonly #count: number;

  /**
   * The listeners' ports are bound ports (port 0 resolved by the caller, `freePort`): every
   * worker, and every replacement even after all of them died, must listen on the same port.
   */
  constructor(
    private readonly roles: { public: number; api: number },
    private readonly config: FleetcaConfig,
    private readonly publicListener: { host: string; port: number },
    private readonly api: ApiListenerSpec,
    /** Environment added for the workers (the passphrase when it did not come from the config's sources). */
    private readonly env: NodeJS.ProcessEnv,
    private readonly log: Logger,
    /** The primary's health, which each worker's /healthz adds to its own. */
    private readonly health: () => Promise<HealthReport>,
    /** A worker committed a revocation (POST /v1/revoke): the primary reads the revocation log now. */
    private readonly onRevoked: () => void,
    /** The whole daemon's metrics as Prometheus text, for GET /metrics served by a worker. */
    private readonly metrics?: () => Promise<string>,
  ) {
    this.#count = Math.max(roles.public, roles.api);
  }

  /** Forks every worker; resolves once all listen, rejects (stopping them) when one cannot. */
  async start(): Promise<void> {
    if (!existsSync(WORKER_SCRIPT)) {
      throw new OperatorError(`listen.publicWorkers/apiWorkers need the built daemon (${WORKER_SCRIPT} is missing: run "npm run build")`);
    }
    cluster.setupPrimary({ exec: WORKER_SCRIPT, args: [], execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS), serialization: "advanced" });
    try {
      await Promise.all(Array.from({ length: this.#count }, (_, slot) => this.#fork(slot)));
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /** How many workers serve now, of how many wanted. */
  status(): { running: number; wanted: number } {
    return { running: [...this.#workers.values()].filter((w) => w.isConnected()).length, wanted: this.#count };
  }

  /** A revocation was committed: every worker reads the revocation log now. */
  notifyRevocations(): void {
    this.#broadcast({ t: "revocations" });
  }

  /**
   * The renewed serving certificate and its key, to every API worker. The key is the API
   * listener's own (ephemeral, never written; not a CA key) and travels on cluster's IPC
   * channel, a socketpair private to the primary and that worker; a worker could not get it any
   * other way without writing it to disk, and issuing one certificate per worker would fill the
   * inventory with serving certificates.
   */
  sendApiCredentials(c: TlsCredentials): void {
    for (const [slot, w] of this.#workers) if (slot < this.roles.api && w.isConnected()) w.send({ t: "api-credentials", ...keyPair(c) } satisfies ToWorker);
  }

  /**
   * Every running worker's metrics (Registry.getMetricsAsJSON), asked for over the workers'
   * protocol; a worker that does not answer within METRICS_REPORT_TIMEOUT_MS is left out.
   */
  gatherMetrics(): Promise<MetricsReport[]> {
    const workers = [...this.#workers.values()].filter((w) => w.isConnected());
    if (workers.length === 0) return Promise.resolve([]);
    const id = this.#nextGatherId++;
    return new Promise((resolve) => {
      const reports: MetricsReport[] = [];
      const timer = setTimeout(() => done(), METRICS_REPORT_TIMEOUT_MS);
      const done = () => {
        clearTimeout(timer);
        this.#gathering.delete(id);
        resolve(reports);
      };
      this.#gathering.set(id, { reports, waiting: new Set(workers), done });
      for (const w of workers) w.send({ t: "metrics-report?", id } satisfies ToWorker);
    });
  }

  #onMetricsReport(w: Worker, id: number, report: MetricsReport): void {
    const g = this.#gathering.get(id);
    if (!g || !g.waiting.delete(w)) return;
    g.reports.push(report);
    if (g.waiting.size === 0) g.done();
  }

  async close(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#restarts.values()) clearTimeout(t);
    this.#restarts.clear();
    await Promise.all(
      [...this.#workers.values()].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const kill = setTimeout(() => w.process.kill("SIGKILL"), STOP_TIMEOUT_MS);
            w.once("exit", () => {
              clearTimeout(kill);
              resolve();
            });
            if (w.isConnected()) w.send({ t: "stop" } satisfies ToWorker);
            else w.process.kill("SIGKILL");
          }),
      ),
    );
    this.#workers.clear();
  }

  #broadcast(m: ToWorker): void {
    for (const w of this.#workers.values()) if (w.isConnected()) w.send(m);
  }

  #fork(slot: number): Promise<void> {
    const w = cluster.fork(this.env);
    this.#workers.set(slot, w);
    return new Promise((resolve, reject) => {
      let listening = false;
      const timer = setTimeout(() => {
        reject(new OperatorError(`worker ${slot} did not start within ${START_TIMEOUT_MS / 1000} s`));
        w.process.kill("SIGKILL");
      }, START_TIMEOUT_MS);
      w.on("message", (m: FromWorker) => {
        if (m.t === "ready") {
          const api = slot < this.roles.api;
          w.send({
            t: "start",
            config: this.config,
            worker: slot,
            ...(slot < this.roles.public && { public: { port: this.publicListener.port, workers: this.roles.public } }),
            ...(api && { api: { port: this.api.port, audiences: this.api.audiences, credentials: keyPair(this.api.credentials()) } }),
          } satisfies ToWorker);
        } else if (m.t === "listening") {
          listening = true;
          clearTimeout(timer);
          this.#startedAt.set(slot, Date.now());
          resolve();
        } else if (m.t === "revoked") {
          this.onRevoked();
        } else if (m.t === "failed") {
          clearTimeout(timer);
          reject(m.kekMismatch ? new KekMismatchError(m.message) : new OperatorError(m.message));
        } else if (m.t === "metrics-report") {
          this.#onMetricsReport(w, m.id, m.report);
        } else if (m.t === "metrics?") {
          const render = this.metrics ?? (() => Promise.reject(new Error("no metrics")));
          void render()
            .catch((err: unknown) => {
              this.log.error({ err }, "metrics could not be gathered");
              return null;
            })
            .then((text) => w.isConnected() && w.send({ t: "metrics", id: m.id, text } satisfies ToWorker));
        } else if (m.t === "health?") {
          void this.health()
            .catch((err: unknown) => ({ errors: [`health check failed: ${(err as Error).message}`], warnings: [] }))
            .then((report) => w.isConnected() && w.send({ t: "health", id: m.id, report } satisfies ToWorker));
        }
      });
      w.once("exit", (code, signal) => {
        clearTimeout(timer);
        if (!listening) reject(new OperatorError(`worker ${slot} exited during start-up (${signal ?? `exit code ${code}`})`));
        if (this.#stopping || this.#workers.get(slot) !== w) return;
        if (!listening) return; // start() fails; the daemon does not start
        this.#restart(slot, code, signal);
      });
    });
  }

  #restart(slot: number, code: number | null, signal: string | null): void {
    const lived = Date.now() - (this.#startedAt.get(slot) ?? 0);
    if (lived >= STABLE_MS) this.#backoffMs = RESTART_FIRST_MS;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(RESTART_MAX_MS, this.#backoffMs * 2);
    this.log.error({ worker: slot, code, signal, restartInMs: delay }, "worker exited; starting another");
    this.#restarts.set(
      slot,
      setTimeout(() => {
        this.#restarts.delete(slot);
        if (this.#stopping) return;
        this.#fork(slot).then(
          () => this.log.info({ worker: slot }, "worker started again"),
          (err: unknown) => {
            if (err instanceof KekMismatchError) {
              // The worker inherited the passphrase the daemon started with; after `fleetca rotate
              // kek` that one no longer opens the keys, and no retry will change it.
              this.log.error(
                { worker: slot, reason: err.message },
                "worker cannot unlock the CA keys: the KEK was rotated (fleetca rotate kek) since the daemon started; restart the daemon with the new passphrase",
              );
            } else {
              this.log.error({ worker: slot, err }, "worker could not start again");
            }
            if (!this.#stopping && this.#workers.get(slot)?.isDead()) this.#restart(slot, null, null);
          },
        );
      }, delay),
    );
  }
}

function keyPair(c: TlsCredentials): { key: string; cert: string } {
  return { key: c.key, cert: c.cert };
}

/** A port free on `host` now: the kernel's pick for port 0, released at once for the workers to bind. */
export function freePort(host: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", (e: NodeJS.ErrnoException) => reject(new OperatorError(`cannot listen on ${host}:0 (${key}): ${e.code ?? e.message}`)));
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/**
 * V8's young generation is allowed to grow to 16 MB per semi-space (x64), and module loading
 * alone grows it: an idle worker held ~32 MB of heap for ~13 MB of live objects, about 10 MB of
 * resident memory per worker (measured with /proc/<pid>/smaps_rollup). A worker's requests leave
 * little that survives a scavenge (an OCSP answer, a certificate), so a 2 MB cap costs a more
 * frequent but cheap scavenge. An operator's own setting (node flags or NODE_OPTIONS) wins.
 */
export const WORKER_SEMI_SPACE_MB = 2;

export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const setByOperator = [...execArgv, ...(nodeOptions ?? "").split(/\s+/)].some((a) => /^--max[-_]semi[-_]space[-_]size\b/.test(a));
  return setByOperator ? [...execArgv] : [...execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`];
}
