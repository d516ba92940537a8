import type { Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import { existsSync, unlinkSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { writeFileAtomic } from "../core/atomic-file.js";
import type { Secret } from "../core/secret.js";
import type { Signer } from "../signing/signer.js";
import { createHash } from "node:crypto";
import { derivedPublicUrlWarning, publicUrlFromListen } from "../config/public-url.js";
import type { FleetcaConfig } from "../config/schema.js";
import type { Issuer } from "../issuance/issuer.js";
import { LiveIssuers, type IssuerLineup } from "../issuance/live-issuers.js";
import { ClientAuthenticator } from "../registration/client-authentication.js";
import { RevokeService } from "../revocation/revoke-service.js";
import { RevocationFeed } from "../revocation/revocation-feed.js";
import { CrlDirectory } from "../revocation/crl/crl-directory.js";
import { CrlBuildQueue, CrlPublisher, type CrlWriterLease } from "../revocation/crl/crl-publisher.js";
import { LeaseKeeper, newHolderId } from "../cluster/lease-keeper.js";
import type { CrlScope } from "../storage/ports.js";
import { crlUrl } from "../revocation/crl/crl-shard.js";
import { StoredRootCrl } from "../revocation/crl/root-crl.js";
import { OcspResponder } from "../revocation/ocsp/ocsp-responder.js";
import { createApiApp } from "../api/api-router.js";
import { createPublicServer } from "../api/public-server.js";
import { createHealthCheck, databaseAnswers } from "../api/health-check.js";
import { loadOrCreateAuditKey } from "../audit/audit-key.js";
import { recordStart } from "../audit/start-record.js";
import { TreeHeadPublisher } from "../audit/tree-head-publisher.js";
import { latestTreeHeadJson } from "../audit/tree-head-view.js";
import { trustBundle } from "../storage/sqlite/sqlite-cross-certificates.js";
import { closeServer, isWildcard, listen, splitHostPort, urlHost } from "../api/listener.js";
import { connectionLimitsOf, openFileLimitProblem } from "../api/connection-guard.js";
import { passphraseFrom } from "../config/load.js";
import { OcspPresigner } from "../revocation/ocsp/ocsp-presigner.js";
import { SigningBudget } from "../revocation/ocsp/signing-budget.js";
import { RenewalInfoService } from "../registration/renewal-info.js";
import { ServingCertificate, type TlsCredentials } from "../api/serving-certificate.js";
import { freePort, PublicWorkers } from "./public-workers.js";
import { certificateAuthorityFor, clientCaPems, createApiListener, installApiCredentials, issuanceWrites, registrationAuthorityFor } from "./api-service.js";
import { acquireServeLock, assertPortsFree } from "./serve-lock.js";
import { SERVE_STATE_FILE, type OpenedCa } from "./data-dir.js";
import { openCa } from "./open-ca.js";
import { caInitialised, initHierarchy } from "./init.js";
import { CaMetrics, shortKeyId } from "../metrics/ca-metrics.js";
import { createMetricsServer } from "../metrics/metrics-endpoint.js";
import { daemonExposition } from "../metrics/metrics-exposition.js";
import { countSignatures } from "../metrics/signature-counter.js";

export interface Daemon {
  apiUrl: string;
  publicUrl: string;
  servingCertificate: ServingCertificate;
  dataDir: OpenedCa;
  /** This process's metrics (its workers report their own to it): for more gauges, e.g. trackExpiry, setAuditTreeSize. */
  metrics: CaMetrics;
  /** Runs the periodic jobs now (serving-cert renewal, pruning); the timers call the same. */
  tick(): Promise<void>;
  /**
   * Stops the daemon: the listeners first (no new connections; requests in flight get `graceMs`
   * to finish, default none), then the publishers; the queued commits are written and a last
   * tree head is signed over the issuance log before the database closes.
   */
  close(opts?: { graceMs?: number }): Promise<void>;
}

export interface DaemonOptions {
  passphrase: Secret | undefined;
  clock: Clock;
  log: Logger;
  /** Periodic job interval; tests pass 0 to drive `tick()` by hand. */
  tickMs?: number;
  /**
   * Wraps the online intermediate's Signer (the narrow port every signature goes through): for
   * counting signatures or injecting a signer fault in tests, and for metrics.
   */
  wrapSigner?: (s: Signer) => Signer;
  /** The config file the daemon was started with (null: built-in defaults), for the start-up log. */
  configSource?: string | null;
}

/**
 * listen.public on port 0 with publicUrl derived from it: the port is chosen before anything is
 * initialised, so the intermediate, the serving certificate and every leaf name the port the
 * public listener then binds. (The kernel's pick is released and bound again a moment later;
 * only a test setup uses port 0, and a lost race fails the start with EADDRINUSE, loudly.)
 */
async function withPublicPortChosen(config: FleetcaConfig): Promise<FleetcaConfig> {
  if (config.publicUrlSource !== "listen.public") return config;
  const [host, port] = splitHostPort(config.listen.public);
  if (port !== 0) return config;
  const chosen = `${host.includes(":") ? `[${host}]` : host}:${await freePort(host, "listen.public")}`;
  return { ...config, listen: { ...config.listen, public: chosen }, publicUrl: publicUrlFromListen(chosen) };
}

const SERVING_CERT_LIFETIME_MS = 24 * 3_600_000;
/** SPEC: a revocation shows in OCSP and /crl within 5 s, also when `fleetca revoke` made it. */
const REVOCATION_POLL_MS = 1_000;
/**
 * SPEC: `fleetca rotate intermediate` (and `fleetca revoke-issuer`) is live within 5 s: the
 * issuers table, a handful of rows another process writes, is read again this often.
 */
export const ISSUER_POLL_MS = 1_000;
/** Revocations this close together share one new CRL (a burst of 1000 is a few signatures, not 1000). */
const CRL_DEBOUNCE_MS = 250;
const CRL_WARNING_EVERY_MS = 3_600_000;
/**
 * Replicas on PostgreSQL: a CRL scope's lease runs this long, so a dead writer's CRLs move to
 * another replica within it (well inside crl.interval), and is renewed three times per lease.
 */
export const CRL_LEASE_MS = 15_000;
const CRL_LEASE_RENEW_MS = 5_000;
/** Replicas: how often the scopes another replica writes are checked for a newer stored CRL. */
const CRL_FOLLOW_MS = 1_000;

export async function startDaemon(configured: FleetcaConfig, opts: DaemonOptions): Promise<Daemon> {
  const { clock, log } = opts;
  const config = await withPublicPortChosen(configured);
  const urlWarning = derivedPublicUrlWarning(config.listen.public, config.publicUrl, config.publicUrlSource);
  if (urlWarning) log.warn({ publicUrl: config.publicUrl }, urlWarning);
  // Before anything is initialised or minted: the listeners' ports are free, and no other
  // daemon serves this dataDir (serve-lock.ts).
  await assertPortsFree([
    ["listen.api", config.listen.api],
    ["listen.public", config.listen.public],
    ["listen.metrics", config.listen.metrics],
  ]);
  const lock = acquireServeLock(config.dataDir);
  try {
    if (!(await caInitialised(config))) {
      // Loud, with the config it came from: a config read from an unexpected place (a relative
      // dataDir resolves against the config file) makes a new CA, not an error (SPEC), so the
      // operator must be able to tell at once (issue 16).
      const source = opts.configSource === undefined ? {} : { config: opts.configSource ?? "(built-in defaults)" };
      const where = config.storage.type === "postgres" ? { storage: config.storage.url } : { dataDir: config.dataDir };
      log.warn({ ...where, ...source }, `${config.storage.type === "postgres" ? "the database" : "dataDir"} holds no CA: INITIALISING A NEW CA (a new root) there; if you meant an existing CA, stop and pass its config with --config or FLEETCA_CONFIG`);
      try {
        const r = await initHierarchy(config, opts.passphrase, clock);
        log.warn({ dataDir: config.dataDir, rootFingerprint: r.rootFingerprint, intermediate: r.intermediateKeyId }, "new CA initialised: pin this root fingerprint (cert-agent --root-fingerprint)");
      } catch (e) {
        // Replicas started together on an empty database: another one made the CA first.
        if (config.storage.type !== "postgres" || !(await caInitialised(config))) throw e;
        log.info("another replica initialised the CA meanwhile; serving it");
      }
    }
    const dd = await openCa(config, opts.passphrase, { create: false, ...issuanceWrites(log), log });
    try {
      const daemon = await run(config, dd, opts);
      return {
        ...daemon,
        close: async (closeOpts) => {
          try {
            await daemon.close(closeOpts);
          } finally {
            lock.release();
          }
        },
      };
    } catch (e) {
      await dd.storage.close();
      throw e;
    }
  } catch (e) {
    lock.release();
    throw e;
  }
}

async function run(config: FleetcaConfig, dd: OpenedCa, opts: DaemonOptions): Promise<Daemon> {
  const { clock, log } = opts;
  if (dd.kek.mode === "development") {
    log.warn(
      { kekFile: join(dd.dir, "kek.key") },
      "DEVELOPMENT MODE: CA keys are wrapped by a random KEK stored next to them; anyone who can read dataDir has the keys. Set FLEETCA_PASSPHRASE or passphraseFile for production",
    );
  }
  const metrics = new CaMetrics({ clock });
  // Only the intermediates' keys are unwrapped (the current one, and older ones while their
  // certificates live): the root key stays sealed (init and rotation only). Each key's
  // signatures are counted (fleetca_signatures_total).
  const wrap = (s: Signer, keyIdHex: string): Signer => {
    const counted = countSignatures(s, metrics.signaturesBy(keyIdHex));
    return opts.wrapSigner ? opts.wrapSigner(counted) : counted;
  };
  const storage = dd.storage;
  const liveIssuers = new LiveIssuers(storage.issuers, storage.issuerLifecycle, dd.caKeys, clock, wrap);
  const lineup = (await liveIssuers.refresh())!;
  const roots = lineup.records.filter((i) => i.role === "root" && i.status === "active");
  // /roots.pem: the active roots, and the cross certificates between them during a root rotation.
  const rootsBundle = async () => trustBundle(liveIssuers.lineup.records, await storage.crossCertificates.allCrossCertificates(), clock.now());
  const issuer = lineup.current;
  // The issuance log: the keys this process loaded and the configuration it runs with are its
  // first entries of the run; tree heads are signed by this (primary) process only.
  const auditLog = storage.audit;
  const auditKey = await loadOrCreateAuditKey(dd.caKeys, auditLog, clock);
  await recordStart(auditLog, config, clock.now(), [
    ...lineup.answering.map((i) => ({ key: lineup.records.find((r) => r.keyId === i.keyIdHex)?.keyName ?? i.keyIdHex, role: "intermediate", spki: i.signer.publicKeySpki })),
    { key: auditKey.name, role: "audit", spki: auditKey.signer.publicKeySpki },
  ]);
  // Replicas sharing PostgreSQL (issue 17): one writer per CRL scope, the holder of its lease;
  // the holder of the current intermediate's full-CRL lease also signs tree heads and pre-signs
  // OCSP answers, so that work is done once, by one replica at a time.
  const leases =
    storage.kind === "postgres"
      ? new LeaseKeeper<CrlScope>(
          storage.crlLeases,
          newHolderId(),
          (s) => `crl/${s.issuerKeyId}/${s.shard ?? "full"}`,
          clock,
          { leaseMs: CRL_LEASE_MS, renewEveryMs: CRL_LEASE_RENEW_MS },
          log,
          (scope, held) => {
            // A lease just taken over: publish now if due (the dead holder's CRL may be old).
            if (held) void crlsRef?.publisherOf(scope)?.regenerateIfDue();
          },
        )
      : null;
  if (leases) metrics.watchLeases(() => leases.leases());
  let crlsRef: CrlDirectory | null = null;
  let singletonScope: CrlScope = { issuerKeyId: lineup.current.keyIdHex, shard: null };
  const doesSingletonWork = (): boolean => leases === null || leases.holds(singletonScope);
  const writerLease: CrlWriterLease | undefined = leases
    ? { holds: (s) => leases.holds(s), save: (s) => storage.crlLeases.saveCrlAsHolder(s, leases.holder, clock.now()) }
    : undefined;
  const treeHeads = new TreeHeadPublisher(auditLog, auditKey, clock, log, (size, signed) => metrics.setAuditTreeSize(size, signed), leases ? doesSingletonWork : null);
  await treeHeads.start();
  // Replaced when a rotation makes another intermediate current (followIssuers below).
  const answering = (k: string) => liveIssuers.lineup.answering.find((i) => i.keyIdHex === k);
  let ca = certificateAuthorityFor(config, issuer, clock, answering);
  let audiences: string[] = [];
  // Assigned below, once the publishers it updates exist; a renewal before then finds the
  // intermediate known anyway (the lineup was read at start).
  let followIssuersNow: () => Promise<void> = async () => {};
  const followIssuer = async (keyId: string): Promise<void> => {
    if (!answering(keyId)) await followIssuersNow();
  };
  const { ra, provisioners, rateLimits } = await registrationAuthorityFor(config, () => ca, dd, { clock, log, audiences: () => audiences, metrics, followIssuer });

  const [apiHost, apiPort] = splitHostPort(config.listen.api);
  const [pubHost, pubPort] = splitHostPort(config.listen.public);
  const servingNames = unique(["localhost", "127.0.0.1", ...(isWildcard(apiHost) ? [] : [apiHost]), ...config.serverNames,
    ...(config.apiUrl ? [new URL(config.apiUrl).hostname.replace(/^\[|\]$/g, "")] : [])]);

  let apiServer: HttpsServer | null = null;
  let workers: PublicWorkers | null = null;
  let clientCas = clientCaPems(lineup.answering);
  const install = (c: TlsCredentials) => {
    if (apiServer) installApiCredentials(apiServer, c, clientCas);
    workers?.sendApiCredentials(c);
  };
  // The API's own certificate lives a day (or maxTTL if shorter), whatever leaves get by default:
  // a short defaultTTL for a fleet must not make the CA's own listener churn or lapse.
  const servingLifetimeMs = Math.min(SERVING_CERT_LIFETIME_MS, config.issuance.maxTTL);
  // Replicas on one database each serve their own certificate: named by machine and dataDir (the
  // same across this replica's restarts), each supersedes only its own predecessors.
  const servingInstance = storage.kind === "postgres" ? `replica:${hostname()}:${resolvePath(config.dataDir)}` : null;
  const serving = new ServingCertificate(ra, servingNames, servingLifetimeMs, clock, log, install, servingInstance);
  const creds = await serving.issue();
  for (const i of lineup.records.filter((r) => r.status === "active")) metrics.trackExpiry(`${i.role}:${shortKeyId(i.keyId)}`, () => i.notAfter);
  metrics.trackExpiry("api", () => serving.current.notAfter);

  // The request-path ports (asynchronous, ports.ts) over the store. GET /v1/renewal-info reads
  // overrides that `fleetca renew-window` (another process) writes to the same file.
  const ports = storage.requests;
  const clients = new ClientAuthenticator(ports, clock, config.admins, (p) => config.provisioners.some((c) => c.name === p && c.renewAfterExpiry));
  // Revocation publication: the feed tells CRL/OCSP publishers about every committed revocation.
  const revocationPorts = storage.crls;
  const revocationFeed = new RevocationFeed(storage.revocationLog, REVOCATION_POLL_MS, log);
  // (CRL and OCSP publishers are wired here.)
  // CRLs: for each issuer that answers for its certificates (the current intermediate, and older
  // ones until their last certificate expires), its full CRL and one per partition ever assigned
  // (crl.shards now, and any earlier setting whose certificates may still live).
  const crlCadence = { intervalMs: config.crl.interval, validityMs: config.crl.validity, debounceMs: CRL_DEBOUNCE_MS };
  const crlQueue = new CrlBuildQueue();
  const crlPublishersFor = async (i: Issuer): Promise<CrlPublisher[]> => {
    if (config.crl.shards > 1) await revocationPorts.registerCrlShards(i.keyIdHex, Array.from({ length: config.crl.shards }, (_, n) => n));
    return [
      new CrlPublisher(i, null, null, revocationPorts, clock, crlCadence, log, crlQueue, metrics.crlObserver, writerLease),
      ...(await revocationPorts.crlShards(i.keyIdHex)).map((n) => new CrlPublisher(i, n, crlUrl(config.publicUrl, i.keyIdHex, n), revocationPorts, clock, crlCadence, log, crlQueue, metrics.crlObserver, writerLease)),
    ];
  };
  const rootCrls = roots.map((r) => new StoredRootCrl(r.keyId, revocationPorts, clock));
  const crls = new CrlDirectory((await Promise.all(lineup.answering.map(crlPublishersFor))).flat(), rootCrls, issuer.keyIdHex);
  crlsRef = crls;
  revocationFeed.subscribe(crls.onRevocations);
  // OCSP: the issuers answer for their own certificates (RFC 6960 §4.2.2.2); the list follows
  // rotations. Pre-signed answers are re-signed at once on every revocation.
  const ocspIssuers: Issuer[] = [...lineup.answering];
  // Pre-signed answers live in the database (shared by every process that serves /ocsp) and are
  // signed in the background after start-up; requests that need a fresh signature are bounded
  // per client (config ocsp.rateLimit).
  const ocspStore = storage.ocspAnswers;
  const ocsp = new OcspResponder(ocspIssuers, ports, clock, log, {
    validityMs: config.ocsp.validity,
    store: ocspStore,
    budget: new SigningBudget(clock, config.ocsp.rateLimit),
    // Replicas: a revocation's answers are signed once, by the holder of the singleton lease.
    ...(leases && { resignOnRevocation: () => doesSingletonWork() }),
  });
  const ocspPresigner = new OcspPresigner([...ocsp.issuers], ocspStore, clock, log, { validityMs: config.ocsp.validity });
  revocationFeed.subscribe((events) => ocsp.onRevocations(events));
  await revocationFeed.start();
  // Loaded (or signed) after the feed took its cursor, so a revocation committed meanwhile is
  // either in the first CRL or reported by the feed; and before any listener opens. It never
  // throws: a CRL that cannot be built is reported by /healthz and the log, not a failed start.
  if (leases) {
    // The leases before the first CRLs: a scope's first holder signs it, the others serve its CRL.
    leases.track(crls.scopes());
    await leases.start();
  }
  await crls.start();
  // Replicas: revocations another replica commits reach the feed at once (LISTEN), and the scopes
  // another replica writes follow what it stored.
  const revocationWatch = storage.watchRevocations?.(() => void revocationFeed.poll(), log) ?? null;
  if (revocationWatch) metrics.watchRevocationNotifications(() => revocationWatch.listening);
  const followTimer = leases ? setInterval(() => void crls.refreshFromStore(), CRL_FOLLOW_MS) : null;
  followTimer?.unref();
  const presign = (): Promise<unknown> =>
    (doesSingletonWork() ? ocspPresigner.run() : Promise.resolve()).catch((err: unknown) => log.error({ err }, "OCSP pre-signing failed"));
  // Errors on every tick, for as long as they last; a warning (a root CRL due within 7 days)
  // once an hour, so a week of it stays readable.
  let lastWarnedAt = -Infinity;
  const reportCrlHealth = (): void => {
    const h = crls.health();
    for (const e of h.errors) log.error({ problem: e }, "CRL publication problem");
    const now = clock.now().getTime();
    if (h.warnings.length > 0 && now - lastWarnedAt >= CRL_WARNING_EVERY_MS) {
      lastWarnedAt = now;
      for (const w of h.warnings) log.warn({ problem: w }, "CRL publication warning");
    }
  };
  reportCrlHealth();
  const revocations = new RevokeService(ports, clock, log, () => void revocationFeed.poll());
  const apiWorkerCount = config.listen.apiWorkers;
  const publicLimits = connectionLimitsOf(config.listen, "public");
  // The listeners this process serves itself share its descriptors.
  const fdProblem = openFileLimitProblem([
    ...(apiWorkerCount > 0 ? [] : [connectionLimitsOf(config.listen, "api").maxConnections]),
    ...(config.listen.publicWorkers > 0 ? [] : [publicLimits.maxConnections]),
  ]);
  if (fdProblem) log.warn(fdProblem);
  const renewalInfo = new RenewalInfoService(ports, clock);
  // The API: served here, or by `listen.apiWorkers` processes that build the same CA and RA on
  // the shared database (cli/api-worker-role.ts) and get the serving certificate from here.
  apiServer =
    apiWorkerCount > 0
      ? null
      : createApiListener(config, creds, createApiApp({ ra, clients, revocations, certificates: ports, renewalInfo, log, roots: rootsBundle, metrics }), log, clientCas, metrics);
  // GET /metrics, wherever it is served, shows the whole daemon: this process and every worker.
  const exposition = daemonExposition(metrics, () => workers?.gatherMetrics() ?? Promise.resolve([]));
  const metricsServer = config.listen.metrics ? createMetricsServer(exposition, log, publicLimits.handshakeTimeoutMs) : null;
  // The public listener: served here, or by `listen.publicWorkers` processes (public-workers.ts)
  // that read what this one signs and stores; their /healthz adds this process's report.
  const workerCount = config.listen.publicWorkers;
  const operations = storage.operations;
  metrics.watchStorage(() => databaseAnswers(operations));
  const health = createHealthCheck(operations, () => ca.issuer, clock, () => {
    const h = crls.health();
    const warnings = [...h.warnings];
    const w = workers?.status();
    if (w && w.running < w.wanted) warnings.push(`workers: ${w.running} of ${w.wanted} running`);
    const auditProblem = treeHeads.problem;
    return { errors: auditProblem ? [...h.errors, auditProblem] : h.errors, warnings };
  });
  const publicServer: HttpServer | null =
    workerCount > 0
      ? null
      : createPublicServer({
          ocsp,
          crls,
          sources: { roots: rootsBundle, intermediate: () => ca.issuer.der, health, auditTreeHead: () => latestTreeHeadJson(auditLog) },
          clock,
          log,
          crlIntervalMs: config.crl.interval,
          limits: publicLimits,
          metrics: { recorder: metrics, exposition: metricsServer ? null : exposition },
        });

  let boundApiPort: number;
  let boundPublicPort: number;
  // Workers (for either listener) start after the primary's own listeners; a worker unwraps the
  // intermediate key itself from the same sources as this process (FLEETCA_PASSPHRASE,
  // passphraseFile); only a passphrase handed to startDaemon otherwise (in-process callers) is
  // passed on, in the worker's environment as an operator would.
  try {
    boundApiPort = apiServer ? (await listen(apiServer, apiHost, apiPort, "listen.api", connectionLimitsOf(config.listen, "api").maxConnections)).port : apiPort === 0 ? await freePort(apiHost, "listen.api") : apiPort;
    if (publicServer) boundPublicPort = (await listen(publicServer, pubHost, pubPort, "listen.public", publicLimits.maxConnections)).port;
    else boundPublicPort = pubPort === 0 ? await freePort(pubHost, "listen.public") : pubPort;
    // The audiences name the bound port, so a token minted for it is accepted by every worker.
    audiences = signAudiences(config, servingNames, boundApiPort);
    const slots = Math.max(workerCount, apiWorkerCount);
    if (slots > 0) {
      const derivable = passphraseFrom(config)?.reveal() === opts.passphrase?.reveal();
      const env = derivable ? {} : { FLEETCA_PASSPHRASE: opts.passphrase?.reveal() ?? "" };
      workers = new PublicWorkers(
        { public: workerCount, api: apiWorkerCount },
        config,
        { host: pubHost, port: boundPublicPort },
        { host: apiHost, port: boundApiPort, audiences, credentials: () => serving.current },
        env,
        log,
        health,
        () => void revocationFeed.poll(),
        () => exposition.render(),
      );
      await workers.start();
      const w = workers;
      revocationFeed.subscribe(() => w.notifyRevocations());
    }
    if (metricsServer) {
      const [host, port] = splitHostPort(config.listen.metrics!);
      const bound = await listen(metricsServer, host, port, "listen.metrics");
      log.info({ url: `http://${urlHost(host)}:${bound.port}/metrics` }, "metrics listening");
    }
  } catch (e) {
    if (apiServer) await closeServer(apiServer);
    if (publicServer) await closeServer(publicServer);
    if (metricsServer?.listening) await closeServer(metricsServer);
    throw e;
  }
  const apiUrl = `https://${urlHost(apiHost)}:${boundApiPort}`;
  const publicUrl = `http://${urlHost(pubHost)}:${boundPublicPort}`;

  const statePath = join(dd.dir, SERVE_STATE_FILE);
  writeFileAtomic(statePath, JSON.stringify({ pid: process.pid, apiUrl, publicUrl, startedAt: clock.now().toISOString() }) + "\n", 0o600);
  log.info({ url: apiUrl, ...(apiWorkerCount > 0 && { workers: apiWorkerCount }) }, "api listening");
  log.info({ url: publicUrl, ...(workerCount > 0 && { workers: workerCount }) }, "public listening");
  // The root fingerprint(s) at every start, not only the first: what hosts pin (issue 16).
  const rootFingerprints = roots.map((r) => createHash("sha256").update(r.der).digest("hex"));
  log.info({ intermediate: issuer.keyIdHex, notAfter: issuer.info.notAfter, provisioners, rootFingerprint: rootFingerprints.join(","), dataDir: dd.dir, storage: storage.location, publicUrl: config.publicUrl }, "fleetca ready");
  // Every unexpired certificate's answer, signed in the background (it yields between batches).
  void presign();

  // A rotation or revocation of an intermediate, written by another process: publishers and OCSP
  // for a new one first (so its first certificate has a status), then issuance switches to it and
  // the API gets a serving certificate from it; an intermediate whose last certificate expired
  // stops being published. Public and API workers follow the same table on their own.
  const applyLineup = async (next: IssuerLineup): Promise<void> => {
    clients.issuersChanged();
    for (const r of next.records) if (r.role === "root" && r.status === "active") await crls.addRoot(new StoredRootCrl(r.keyId, revocationPorts, clock));
    for (const i of next.answering) if (!crls.issuerKeyIds().includes(i.keyIdHex)) await crls.addIssuer(await crlPublishersFor(i));
    crls.setCurrent(next.current.keyIdHex);
    for (const k of crls.issuerKeyIds()) if (!next.answering.some((i) => i.keyIdHex === k)) await crls.dropIssuer(k);
    singletonScope = { issuerKeyId: next.current.keyIdHex, shard: null };
    leases?.track(crls.scopes());
    ocsp.setIssuers(next.answering);
    ocspPresigner.setIssuers(ocsp.issuers);
    clientCas = clientCaPems(next.answering);
    const previous = ca.issuer.keyIdHex;
    if (next.current.keyIdHex !== previous) {
      ca = certificateAuthorityFor(config, next.current, clock, answering);
      log.info({ intermediate: next.current.keyIdHex, previous, notAfter: next.current.info.notAfter, answering: next.answering.map((i) => i.keyIdHex) }, "issuing from a new intermediate");
      // The API's own certificate moves too (its chain is what clients are shown); install() sets the client CAs.
      await serving.issue();
    } else {
      if (apiServer) installApiCredentials(apiServer, serving.current, clientCas);
      log.info({ intermediate: next.current.keyIdHex, answering: next.answering.map((i) => i.keyIdHex) }, "intermediates changed");
    }
    void presign();
  };
  let following: Promise<void> | null = null;
  const followIssuers = (): Promise<void> =>
    (following ??= (async () => {
      try {
        await crls.refreshRoots();
        const next = await liveIssuers.refresh();
        if (next) await applyLineup(next);
      } catch (err) {
        // The last lineup keeps serving; the next poll tries again.
        log.error({ err }, "following the issuers table failed");
      }
    })().finally(() => (following = null)));
  followIssuersNow = followIssuers;

  // Each step of the periodic job on its own: one that fails (the database unreachable, say) is
  // logged and tried again next tick, and does not keep the others from running. A rejection
  // must not escape the timer either: an unhandled one ends the process.
  const step = async (what: string, work: () => Promise<unknown>): Promise<void> => {
    try {
      await work();
    } catch (err) {
      log.error({ err }, `${what} failed; the next tick tries again`);
    }
  };
  const tick = async () => {
    await step("following the issuers table", followIssuers);
    await step("renewing the API serving certificate", () => serving.renewIfDue());
    await step("CRL publication", () => crls.regenerateDue());
    reportCrlHealth();
    // Pre-signs new certificates' answers and re-signs stored ones past half their life, then
    // refreshes the ones in memory (from the store when it can).
    await step("OCSP pre-signing", presign);
    await step("refreshing OCSP answers", () => ocsp.refresh());
    await step("pruning expired token ids and idempotency keys", async () => {
      const pruned = await operations.pruneExpired(new Date(clock.now().getTime() - config.tokens.leeway));
      if (pruned > 0) log.debug({ pruned }, "pruned expired token ids and idempotency keys");
    });
  };
  // Tick often enough to renew the serving cert well inside its last third, even for a tiny maxTTL.
  const tickMs = opts.tickMs ?? Math.max(1_000, Math.min(60_000, Math.floor(servingLifetimeMs / 10)));
  const timer = tickMs > 0 ? setInterval(() => void tick(), tickMs) : null;
  timer?.unref();
  const treeHeadTimer = setInterval(() => void treeHeads.publish(), config.audit.treeHeadInterval);
  treeHeadTimer.unref();
  const issuerTimer = tickMs > 0 ? setInterval(() => void followIssuers(), ISSUER_POLL_MS) : null;
  issuerTimer?.unref();

  return {
    apiUrl,
    publicUrl,
    servingCertificate: serving,
    dataDir: dd,
    metrics,
    tick,
    close: async (closeOpts?: { graceMs?: number }) => {
      const graceMs = closeOpts?.graceMs ?? 0;
      if (timer) clearInterval(timer);
      if (issuerTimer) clearInterval(issuerTimer);
      await following;
      // Listeners first, so a request in flight still has its RA, store and responders.
      await Promise.all([
        apiServer ? closeServer(apiServer, graceMs) : null,
        publicServer ? closeServer(publicServer, graceMs) : null,
        metricsServer ? closeServer(metricsServer) : null,
        workers?.close(),
      ]);
      if (followTimer) clearInterval(followTimer);
      await revocationWatch?.stop();
      await revocationFeed.stop();
      await crls.stop();
      await ocspPresigner.close();
      await ocsp.close();
      // What this process took from the rate-limit buckets, stored for the next start.
      await rateLimits.close();
      // The last tree head covers everything this run wrote: the listeners (and workers) are
      // closed, the queued commits are written, then the head is signed.
      clearInterval(treeHeadTimer);
      await storage.flushCommits();
      await treeHeads.publish();
      // Handed back, so another replica takes this one's CRL scopes at once, not after the lease runs out.
      await leases?.stop();
      await storage.close();
      if (existsSync(statePath)) unlinkSync(statePath);
    },
  };
}

/**
 * Every `aud` a bootstrap token may carry for this CA: {base}/v1/sign for the configured apiUrl
 * and for each name the serving certificate answers to, on the bound port.
 */
function signAudiences(config: FleetcaConfig, names: string[], port: number): string[] {
  const bases = names.map((n) => `https://${urlHost(n)}:${port}`);
  if (port === 443) bases.push(...names.map((n) => `https://${urlHost(n)}`));
  if (config.apiUrl) bases.push(config.apiUrl);
  return unique(bases.map((b) => `${b}/v1/sign`));
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}
