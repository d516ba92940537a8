#!/usr/bin/env node
/**
 * A worker: one of the processes `fleetca serve` forks with node:cluster to serve its listeners
 * on every core (listen.publicWorkers, listen.apiWorkers; one process may serve both).
 *
 * Public role (OCSP, CRLs, roots, /healthz): everything it serves comes from the shared
 * database: the pre-signed OCSP answers and the CRLs the primary signs and stores, the inventory
 * for requests that need a fresh signature (a nonce, several CertIDs), which it signs itself with
 * the intermediate key it unwraps once. It follows the revocation log (told at once by the
 * primary, polled every second besides) so a revocation is served by every worker within the
 * same bounds as by the primary.
 *
 * API role (sign, renew, revoke): api-worker-role.ts.
 */
import cluster from "node:cluster";
import { trustBundle } from "../storage/sqlite/sqlite-cross-certificates.js";
import { latestTreeHeadJson } from "../audit/tree-head-view.js";
import type { Server } from "node:http";
import { systemClock } from "../core/clock.js";
import { OperatorError } from "../core/errors.js";
import { KekMismatchError } from "../signing/kek.js";
import { passphraseFrom } from "../config/load.js";
import type { FleetcaConfig } from "../config/schema.js";
import { createLogger } from "../log/logger.js";
import { LiveIssuers, type IssuerLineup } from "../issuance/live-issuers.js";
import { createHealthCheck, type HealthReport } from "../api/health-check.js";
import { closeServer, listen, splitHostPort } from "../api/listener.js";
import { createPublicServer } from "../api/public-server.js";
import { connectionLimitsOf } from "../api/connection-guard.js";
import { CrlMirror } from "../revocation/crl/crl-mirror.js";
import { OcspResponder } from "../revocation/ocsp/ocsp-responder.js";
import { SigningBudget } from "../revocation/ocsp/signing-budget.js";
import { RevocationFeed } from "../revocation/revocation-feed.js";
import { CaMetrics } from "../metrics/ca-metrics.js";
import type { MetricsExposition } from "../metrics/metrics-exposition.js";
import { countSignatures } from "../metrics/signature-counter.js";
import type { OpenedCa } from "./data-dir.js";
import type { IssuerRecord } from "../storage/ports.js";
import { openCa } from "./open-ca.js";
import type { FromWorker, ToWorker } from "./public-worker-protocol.js";

/** How often a worker looks for new CRLs and revocations made elsewhere; SPEC allows 5 s. */
const FOLLOW_MS = 1_000;
/** How often the in-memory OCSP answers are swept (re-signed past half their life, as the primary's tick). */
const SWEEP_MS = 60_000;
/** How long /healthz waits for the primary's part before it says the primary does not answer. */
const PRIMARY_HEALTH_TIMEOUT_MS = 3_000;
/** How long GET /metrics waits for the primary's merge (which waits up to 2 s for each worker). */
const PRIMARY_METRICS_TIMEOUT_MS = 5_000;

function send(m: FromWorker): void {
  process.send?.(m);
}

async function runWorker(start: Extract<ToWorker, { t: "start" }>): Promise<{ close(): Promise<void> }> {
  const config: FleetcaConfig = start.config;
  const clock = systemClock;
  const log = createLogger({ level: config.log.level, format: config.log.format }).child({ worker: start.worker });
  // The API role's modules (the RA, JWT verification, the issuance path) are loaded only by a
  // worker that issues: a worker that only answers OCSP and CRLs stays ~2 MB smaller.
  const apiModules = start.api ? { service: await import("./api-service.js"), role: await import("./api-worker-role.js") } : null;
  // Read-only unless this worker issues: a public worker must not be able to write.
  const dd = await openCa(config, passphraseFrom(config), {
    create: false,
    readonlyStore: !start.api,
    ...(apiModules && apiModules.service.issuanceWrites(log)),
    log,
  });
  const closers: (() => Promise<void> | void)[] = [
    async () => {
      await dd.storage.flushCommits();
      await dd.storage.close();
    },
  ];
  // This worker's counters; the primary asks for them on every scrape and merges them with its own.
  const metrics = new CaMetrics({ clock });
  process.on("message", (m: ToWorker) => {
    if (m.t !== "metrics-report?") return;
    void metrics.report().then(
      (report) => send({ t: "metrics-report", id: m.id, report }),
      (err: unknown) => log.error({ err }, "metrics report failed"),
    );
  });
  const close = async () => {
    for (const c of closers.reverse()) await c();
  };
  try {
    // The intermediates this worker signs with, followed as the primary follows them (a rotation
    // or `fleetca revoke-issuer` is read from the shared database, within FOLLOW_MS).
    const liveIssuers = new LiveIssuers(dd.storage.issuers, dd.storage.issuerLifecycle, dd.caKeys, clock, (s, keyIdHex) => countSignatures(s, metrics.signaturesBy(keyIdHex)));
    const lineup = (await liveIssuers.refresh())!;
    const roots = lineup.records.filter((i) => i.role === "root" && i.status === "active");
    const followers: Array<(l: IssuerLineup) => void | Promise<void>> = [];
    // One read at a time; a caller that asks meanwhile (a renewal from an intermediate this
    // worker does not know yet) waits for the read in flight.
    let following: Promise<void> | null = null;
    const followNow = (): Promise<void> =>
      (following ??= liveIssuers
        .refresh()
        .then(async (next) => {
          if (!next) return;
          for (const f of followers) await f(next);
          log.info({ intermediate: next.current.keyIdHex, answering: next.answering.map((i) => i.keyIdHex) }, "intermediates changed");
        })
        .catch((err: unknown) => log.error({ err }, "following the issuers table failed"))
        .finally(() => (following = null)));
    const followIssuers = setInterval(() => void followNow(), FOLLOW_MS);
    closers.push(() => clearInterval(followIssuers));
    const feed = new RevocationFeed(dd.storage.revocationLog, FOLLOW_MS, log);
    closers.push(() => feed.stop());
    process.on("message", (m: ToWorker) => {
      if (m.t === "revocations") void feed.poll();
    });
    if (start.public) {
      const pub = await startPublicRole(start.public, { config, dd, lineup, roots, feed, clock, log, metrics });
      followers.push(pub.onIssuers);
      closers.push(pub.close);
    }
    if (start.api && apiModules) {
      const api = await apiModules.role.startApiRole({
        config,
        dd,
        lineup,
        clock,
        log,
        port: start.api.port,
        audiences: start.api.audiences,
        credentials: start.api.credentials,
        metrics,
        onRevoked: () => {
          void feed.poll();
          send({ t: "revoked" });
        },
        followIssuers: followNow,
      });
      process.on("message", (m: ToWorker) => {
        if (m.t === "api-credentials") api.install({ key: m.key, cert: m.cert });
      });
      followers.push(api.onIssuers);
      closers.push(() => api.close());
    }
    await feed.start();
    return { close };
  } catch (e) {
    await close();
    throw e;
  }
}

async function startPublicRole(
  role: { port: number; workers: number },
  p: {
    config: FleetcaConfig;
    dd: OpenedCa;
    lineup: IssuerLineup;
    roots: IssuerRecord[];
    feed: RevocationFeed;
    clock: typeof systemClock;
    log: ReturnType<typeof createLogger>;
    metrics: CaMetrics;
  },
): Promise<{ onIssuers(l: IssuerLineup): Promise<void>; close(): Promise<void> }> {
  const { config, dd, roots, feed, clock, log, metrics } = p;
  let current = p.lineup.current;
  // A client's signing budget is shared out: node:cluster hands connections round-robin, so a
  // client's requests are spread over the workers and each keeps its share of every bucket.
  const share = (n: number) => n / role.workers;
  const budget = new SigningBudget(clock, {
    perSecond: share(config.ocsp.rateLimit.perSecond),
    burst: Math.max(1, Math.ceil(share(config.ocsp.rateLimit.burst))),
    totalPerSecond: share(config.ocsp.rateLimit.totalPerSecond),
  });
  const ocsp = new OcspResponder([...p.lineup.answering], dd.storage.requests, clock, log, {
    validityMs: config.ocsp.validity,
    store: dd.storage.ocspAnswers,
    shareSigned: false,
    budget,
    // One worker per core: a request's signature is made on its own thread (OcspResponderOptions).
    signOnThisThread: true,
  });
  feed.subscribe((events) => ocsp.onRevocations(events));
  const keyIds = (l: IssuerLineup) => l.answering.map((i) => i.keyIdHex);
  const crls = new CrlMirror(dd.storage.crlCatalog, keyIds(p.lineup), roots.map((r) => r.keyId), current.keyIdHex, log, {
    streamAbove: config.crl.streamAbove,
  });
  await crls.refresh();

  const pending = new Map<number, (r: HealthReport) => void>();
  let nextId = 1;
  const primaryHealth = (): Promise<HealthReport> =>
    new Promise((resolve) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve({ errors: ["the primary process does not answer"], warnings: [] });
      }, PRIMARY_HEALTH_TIMEOUT_MS);
      pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      send({ t: "health?", id });
    });
  process.on("message", (m: ToWorker) => {
    if (m.t === "health") {
      pending.get(m.id)?.(m.report);
      pending.delete(m.id);
    }
  });

  // GET /metrics here shows the whole daemon's: the primary merges every process's report.
  const pendingMetrics = new Map<number, (text: string | null) => void>();
  const daemonMetrics: MetricsExposition = {
    contentType: metrics.contentType,
    render: () =>
      new Promise((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          pendingMetrics.delete(id);
          reject(new Error("the primary process does not answer"));
        }, PRIMARY_METRICS_TIMEOUT_MS);
        pendingMetrics.set(id, (text) => {
          clearTimeout(timer);
          if (text === null) reject(new Error("the primary could not gather the metrics"));
          else resolve(text);
        });
        send({ t: "metrics?", id });
      }),
  };
  process.on("message", (m: ToWorker) => {
    if (m.t === "metrics") {
      pendingMetrics.get(m.id)?.(m.text);
      pendingMetrics.delete(m.id);
    }
  });

  const limits = connectionLimitsOf(config.listen, "public");
  const storage = dd.storage;
  const server: Server = createPublicServer({
    ocsp,
    crls,
    sources: {
      // Read per request, as the primary serves it: a root rotation shows at once.
      roots: async () => trustBundle(await storage.issuers.listIssuers(), await storage.crossCertificates.allCrossCertificates(), clock.now()),
      intermediate: () => current.der,
      health: createHealthCheck(storage.operations, () => current, clock, primaryHealth),
      auditTreeHead: () => latestTreeHeadJson(storage.audit),
    },
    clock,
    log,
    crlIntervalMs: config.crl.interval,
    limits,
    // With listen.metrics, the primary alone serves /metrics on that listener.
    metrics: { recorder: metrics, exposition: config.listen.metrics ? null : daemonMetrics },
  });
  // A failed read (the database unreachable) is logged and tried again; a rejection must not
  // escape a timer (an unhandled one ends the process).
  const follow = setInterval(() => void crls.refresh().catch((err: unknown) => log.warn({ err }, "reading the stored CRLs failed")), FOLLOW_MS);
  const sweep = setInterval(() => void ocsp.refresh().catch((err: unknown) => log.warn({ err }, "refreshing OCSP answers failed")), SWEEP_MS);
  const [host] = splitHostPort(config.listen.public);
  await listen(server, host, role.port, "listen.public", limits.maxConnections);
  return {
    onIssuers: async (l) => {
      ocsp.setIssuers(l.answering);
      await crls.setIssuers(
        keyIds(l),
        l.current.keyIdHex,
        l.records.filter((r) => r.role === "root" && r.status === "active").map((r) => r.keyId),
      );
      current = l.current;
    },
    close: async () => {
      clearInterval(follow);
      clearInterval(sweep);
      await crls.close();
      await ocsp.close();
      await closeServer(server);
    },
  };
}

if (!cluster.isWorker) {
  process.stderr.write("fleetca: public-worker.js is started by `fleetca serve` (listen.publicWorkers, listen.apiWorkers), not by hand\n");
  process.exit(2);
}
// The primary is gone (stopped, or killed): a worker has nothing to serve for.
process.on("disconnect", () => process.exit(0));
let started = false;
process.on("message", (m: ToWorker) => {
  if (m.t !== "start" || started) return;
  started = true;
  runWorker(m).then(
    (w) => {
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        void w.close().finally(() => process.exit(0));
      };
      process.on("message", (s: ToWorker) => {
        if (s.t === "stop") stop();
      });
      // Ctrl-C reaches the whole process group; the primary, stopping too, does not replace us.
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
      send({ t: "listening" });
    },
    (e: unknown) => {
      const message = e instanceof OperatorError ? e.message : `unexpected error: ${(e as Error)?.message ?? String(e)}`;
      send({ t: "failed", message, ...(e instanceof KekMismatchError && { kekMismatch: true }) });
      process.exitCode = 1;
      setTimeout(() => process.exit(1), 100);
    },
  );
});
send({ t: "ready" });
