import type { Server as HttpServer } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { existsSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { writeFileAtomic } from "../core/atomic-file.js";
import type { Secret } from "../core/secret.js";
import type { Signer } from "../signing/signer.js";
import type { FleetcaConfig } from "../config/schema.js";
import { ProvisionerRegistry } from "../attestation/routing.js";
import { CertificateAuthority } from "../issuance/certificate-authority.js";
import { bindIssuer, currentIntermediate, type Issuer } from "../issuance/issuer.js";
import { RegistrationAuthority } from "../registration/registration-authority.js";
import { ClientAuthenticator } from "../registration/client-authentication.js";
import { RevokeService } from "../revocation/revoke-service.js";
import { RevocationFeed } from "../revocation/revocation-feed.js";
import { CrlDirectory } from "../revocation/crl/crl-directory.js";
import { CrlBuildQueue, CrlPublisher } from "../revocation/crl/crl-publisher.js";
import { crlShardOf, crlUrl } from "../revocation/crl/crl-shard.js";
import { StoredRootCrl } from "../revocation/crl/root-crl.js";
import { OcspResponder } from "../revocation/ocsp/ocsp-responder.js";
import { sansFromList } from "../core/sans.js";
import { createApiApp } from "../api/api-router.js";
import { createPublicServer } from "../api/public-server.js";
import { createHealthCheck } from "../api/health-check.js";
import { closeServer, CONNECTIONS_CHECK_MS, hardenTimeouts, isWildcard, listen, splitHostPort, urlHost } from "../api/listener.js";
import { connectionLimitsOf, guardConnections, openFileLimitProblem } from "../api/connection-guard.js";
import { passphraseFrom } from "../config/load.js";
import { OcspPresigner } from "../revocation/ocsp/ocsp-presigner.js";
import { SigningBudget } from "../revocation/ocsp/signing-budget.js";
import { SqliteOcspStore } from "../storage/sqlite/sqlite-ocsp-store.js";
import { DEFAULT_GROUP_COMMIT } from "../storage/sqlite/issuance-group-commit.js";
import { ServingCertificate, type TlsCredentials } from "../api/serving-certificate.js";
import { PublicWorkers } from "./public-workers.js";
import { dataDirInitialised, openDataDir, SERVE_STATE_FILE, type OpenedDataDir } from "./data-dir.js";
import { initHierarchy } from "./init.js";
import { buildProvisioners } from "./provisioners.js";

export interface Daemon {
  apiUrl: string;
  publicUrl: string;
  servingCertificate: ServingCertificate;
  dataDir: OpenedDataDir;
  /** Runs the periodic jobs now (serving-cert renewal, pruning); the timers call the same. */
  tick(): Promise<void>;
  close(): Promise<void>;
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
}

const LEAF_BACKDATE_MS = 60_000;
const SERVING_CERT_LIFETIME_MS = 24 * 3_600_000;
/** SPEC: a revocation shows in OCSP and /crl within 5 s, also when `fleetca revoke` made it. */
const REVOCATION_POLL_MS = 1_000;
/** Revocations this close together share one new CRL (a burst of 1000 is a few signatures, not 1000). */
const CRL_DEBOUNCE_MS = 250;
const CRL_WARNING_EVERY_MS = 3_600_000;
const TLS_MIN_VERSION = "TLSv1.2" as const;
/**
 * The API listener asks every client for a certificate but requires none (POST /v1/sign callers
 * have none yet) and lets node judge none: renew/revoke authenticate the presented cert against
 * the inventory and the injected Clock (registration/client-authentication.ts), whereas node's
 * `authorized` would use the real clock and know nothing of revocation.
 */
const API_TLS_OPTIONS = { minVersion: TLS_MIN_VERSION, requestCert: true, rejectUnauthorized: false } as const;

export async function startDaemon(config: FleetcaConfig, opts: DaemonOptions): Promise<Daemon> {
  const { clock, log } = opts;
  if (!dataDirInitialised(config.dataDir)) {
    log.warn({ dataDir: config.dataDir }, "dataDir holds no CA: initialising a new hierarchy first");
    const r = await initHierarchy(config, opts.passphrase, clock);
    log.info({ rootFingerprint: r.rootFingerprint, intermediate: r.intermediateKeyId }, "CA initialised");
  }
  const dd = openDataDir(config.dataDir, opts.passphrase, {
    create: false,
    groupCommit: {
      ...DEFAULT_GROUP_COMMIT,
      // Once per refused batch (each request also gets its 503 and a warn line from http-errors).
      onBatch: (b) => {
        if (!b.committed) log.error({ size: b.size, ms: Math.round(b.ms), err: b.cause }, "issuance batch could not commit: its requests were refused with 503");
        else log.debug({ size: b.size, ms: Math.round(b.ms * 100) / 100 }, "issuance batch committed");
      },
    },
  });
  try {
    return await run(config, dd, opts);
  } catch (e) {
    dd.store.close();
    throw e;
  }
}

async function run(config: FleetcaConfig, dd: OpenedDataDir, opts: DaemonOptions): Promise<Daemon> {
  const { clock, log } = opts;
  if (dd.kek.mode === "development") {
    log.warn(
      { kekFile: join(dd.dir, "kek.key") },
      "DEVELOPMENT MODE: CA keys are wrapped by a random KEK stored next to them; anyone who can read dataDir has the keys. Set FLEETCA_PASSPHRASE or passphraseFile for production",
    );
  }
  const issuers = dd.store.listIssuers();
  const roots = issuers.filter((i) => i.role === "root" && i.status === "active");
  const current = currentIntermediate(issuers, clock.now());
  // Only the online intermediate's key is unwrapped: the root key stays sealed (init and rotation only).
  const loaded = dd.keys.load(current.keyName);
  const issuer = await bindIssuer(current.der, opts.wrapSigner ? opts.wrapSigner(loaded) : loaded);
  const ca = new CertificateAuthority(
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
  );

  const provisioners = await buildProvisioners(config, { keys: dd.keys, store: dd.store, clock, log });
  let audiences: string[] = [];
  const ra = new RegistrationAuthority(
    new ProvisionerRegistry(provisioners),
    () => ca,
    dd.store,
    clock,
    { defaultTtlMs: config.issuance.defaultTTL, idempotencyWindowMs: 24 * 3_600_000 },
    () => audiences,
    log,
  );

  const [apiHost, apiPort] = splitHostPort(config.listen.api);
  const [pubHost, pubPort] = splitHostPort(config.listen.public);
  const servingNames = unique(["localhost", "127.0.0.1", ...(isWildcard(apiHost) ? [] : [apiHost]), ...config.serverNames,
    ...(config.apiUrl ? [new URL(config.apiUrl).hostname.replace(/^\[|\]$/g, "")] : [])]);

  let apiServer: HttpsServer | null = null;
  const install = (c: TlsCredentials) => apiServer?.setSecureContext({ key: c.key, cert: c.cert, ...API_TLS_OPTIONS });
  // The API's own certificate lives a day (or maxTTL if shorter), whatever leaves get by default:
  // a short defaultTTL for a fleet must not make the CA's own listener churn or lapse.
  const servingLifetimeMs = Math.min(SERVING_CERT_LIFETIME_MS, config.issuance.maxTTL);
  const serving = new ServingCertificate(ra, servingNames, servingLifetimeMs, clock, log, install);
  const creds = await serving.issue();

  const clients = new ClientAuthenticator(dd.store, clock, sansFromList(config.admins));
  // Revocation publication: the feed tells CRL/OCSP publishers about every committed revocation.
  const revocationFeed = new RevocationFeed(dd.store, REVOCATION_POLL_MS, log);
  // (CRL and OCSP publishers are wired here.)
  // CRLs: for each issuer that answers for its certificates, its full CRL and one per partition
  // ever assigned (crl.shards now, and any earlier setting whose certificates may still live).
  // Only the current intermediate's key is loaded today; rotation adds the retired ones.
  const crlIssuers: Issuer[] = [issuer];
  const crlCadence = { intervalMs: config.crl.interval, validityMs: config.crl.validity, debounceMs: CRL_DEBOUNCE_MS };
  const crlQueue = new CrlBuildQueue();
  const publishers: CrlPublisher[] = [];
  for (const i of crlIssuers) {
    if (config.crl.shards > 1) dd.store.registerCrlShards(i.keyIdHex, Array.from({ length: config.crl.shards }, (_, n) => n));
    publishers.push(new CrlPublisher(i, null, null, dd.store, clock, crlCadence, log, crlQueue));
    for (const n of dd.store.crlShards(i.keyIdHex)) {
      publishers.push(new CrlPublisher(i, n, crlUrl(config.publicUrl, i.keyIdHex, n), dd.store, clock, crlCadence, log, crlQueue));
    }
  }
  const rootCrls = roots.map((r) => new StoredRootCrl(r.keyId, dd.store, clock));
  const crls = new CrlDirectory(publishers, rootCrls, issuer.keyIdHex);
  revocationFeed.subscribe(crls.onRevocations);
  // OCSP: the issuers answer for their own certificates (RFC 6960 §4.2.2.2); the same list
  // grows with rotation. Pre-signed answers are re-signed at once on every revocation.
  const ocspIssuers: Issuer[] = [issuer];
  // Pre-signed answers live in the database (shared by every process that serves /ocsp) and are
  // signed in the background after start-up; requests that need a fresh signature are bounded
  // per client (config ocsp.rateLimit).
  const ocspStore = new SqliteOcspStore(dd.store.db);
  const ocsp = new OcspResponder(ocspIssuers, dd.store, clock, log, {
    validityMs: config.ocsp.validity,
    store: ocspStore,
    budget: new SigningBudget(clock, config.ocsp.rateLimit),
  });
  const ocspPresigner = new OcspPresigner([...ocsp.issuers], ocspStore, clock, log, { validityMs: config.ocsp.validity });
  revocationFeed.subscribe((events) => ocsp.onRevocations(events));
  revocationFeed.start();
  // Loaded (or signed) after the feed took its cursor, so a revocation committed meanwhile is
  // either in the first CRL or reported by the feed; and before any listener opens. It never
  // throws: a CRL that cannot be built is reported by /healthz and the log, not a failed start.
  await crls.start();
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
  const revocations = new RevokeService(dd.store, clock, log, () => revocationFeed.poll());
  const limits = connectionLimitsOf(config.listen, "api");
  const publicLimits = connectionLimitsOf(config.listen, "public");
  // The API and, without workers, the public listener share this process's descriptors.
  const fdProblem = openFileLimitProblem([limits.maxConnections, ...(config.listen.publicWorkers > 0 ? [] : [publicLimits.maxConnections])]);
  if (fdProblem) log.warn(fdProblem);
  apiServer = createHttpsServer(
    {
      key: creds.key,
      cert: creds.cert,
      ...API_TLS_OPTIONS,
      // Node's default lets a connection that never sends a ClientHello hold a socket for 120 s.
      handshakeTimeout: limits.handshakeTimeoutMs,
      connectionsCheckingInterval: CONNECTIONS_CHECK_MS,
    },
    createApiApp({ ra, clients, revocations, certificates: dd.store, log, roots: () => roots.map((r) => r.der) }),
  );
  hardenTimeouts(apiServer, limits.handshakeTimeoutMs);
  guardConnections(apiServer, "listen.api", limits, log);
  // The public listener: served here, or by `listen.publicWorkers` processes (public-workers.ts)
  // that read what this one signs and stores; their /healthz adds this process's report.
  const workerCount = config.listen.publicWorkers;
  let workers: PublicWorkers | null = null;
  const health = createHealthCheck(dd.store, issuer, clock, () => {
    const h = crls.health();
    const warnings = [...h.warnings];
    const w = workers?.status();
    if (w && w.running < w.wanted) warnings.push(`public workers: ${w.running} of ${w.wanted} running`);
    return { errors: h.errors, warnings };
  });
  const publicServer: HttpServer | null =
    workerCount > 0
      ? null
      : createPublicServer({
          ocsp,
          crls,
          sources: { roots: () => roots.map((r) => r.der), intermediate: () => issuer.der, health },
          clock,
          log,
          crlIntervalMs: config.crl.interval,
          limits: publicLimits,
        });

  const apiAddr = await listen(apiServer, apiHost, apiPort, "listen.api");
  let boundPublicPort: number;
  try {
    if (publicServer) {
      boundPublicPort = (await listen(publicServer, pubHost, pubPort, "listen.public")).port;
    } else {
      // A worker unwraps the intermediate key itself from the same sources as this process
      // (FLEETCA_PASSPHRASE, passphraseFile); only a passphrase handed to startDaemon otherwise
      // (in-process callers) is passed on, in the worker's environment as an operator would.
      const derivable = passphraseFrom(config)?.reveal() === opts.passphrase?.reveal();
      const env = derivable ? {} : { FLEETCA_PASSPHRASE: opts.passphrase?.reveal() ?? "" };
      workers = new PublicWorkers(workerCount, config, pubHost, pubPort, env, log, health);
      boundPublicPort = await workers.start();
      const w = workers;
      revocationFeed.subscribe(() => w.notifyRevocations());
    }
  } catch (e) {
    await closeServer(apiServer);
    throw e;
  }
  const apiUrl = `https://${urlHost(apiHost)}:${apiAddr.port}`;
  const publicUrl = `http://${urlHost(pubHost)}:${boundPublicPort}`;
  audiences = signAudiences(config, servingNames, apiAddr.port);

  const statePath = join(dd.dir, SERVE_STATE_FILE);
  writeFileAtomic(statePath, JSON.stringify({ pid: process.pid, apiUrl, publicUrl, startedAt: clock.now().toISOString() }) + "\n", 0o600);
  log.info({ url: apiUrl }, "api listening");
  log.info({ url: publicUrl, ...(workerCount > 0 && { workers: workerCount }) }, "public listening");
  log.info({ intermediate: issuer.keyIdHex, notAfter: issuer.info.notAfter, provisioners: provisioners.map((p) => p.name) }, "fleetca ready");
  // Every unexpired certificate's answer, signed in the background (it yields between batches).
  void ocspPresigner.run();

  const tick = async () => {
    await serving.renewIfDue();
    await crls.regenerateDue();
    reportCrlHealth();
    // Pre-signs new certificates' answers and re-signs stored ones past half their life, then
    // refreshes the ones in memory (from the store when it can); both log their own failures.
    await ocspPresigner.run();
    await ocsp.refresh();
    try {
      const pruned = dd.store.pruneExpired(new Date(clock.now().getTime() - config.tokens.leeway));
      if (pruned > 0) log.debug({ pruned }, "pruned expired token ids and idempotency keys");
    } catch (err) {
      log.error({ err }, "pruning failed");
    }
  };
  // Tick often enough to renew the serving cert well inside its last third, even for a tiny maxTTL.
  const tickMs = opts.tickMs ?? Math.max(1_000, Math.min(60_000, Math.floor(servingLifetimeMs / 10)));
  const timer = tickMs > 0 ? setInterval(() => void tick(), tickMs) : null;
  timer?.unref();

  return {
    apiUrl,
    publicUrl,
    servingCertificate: serving,
    dataDir: dd,
    tick,
    close: async () => {
      if (timer) clearInterval(timer);
      revocationFeed.stop();
      await crls.stop();
      await ocspPresigner.close();
      await ocsp.close();
      await Promise.all([closeServer(apiServer!), publicServer ? closeServer(publicServer) : workers!.close()]);
      dd.store.close();
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
