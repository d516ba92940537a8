import { existsSync, readFileSync, rmSync } from "node:fs";
import { createHash, X509Certificate } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { allPem, fromPem, toPem } from "../x509/pem.js";
import { CaApi, httpsRequest, type SignAnswer } from "./ca-client.js";
import { makeKeyAndCsr } from "./csr.js";
import { AgentError, errorCode } from "./errors.js";
import { fetchOcsp, type OcspResult } from "./ocsp-fetch.js";
import { setTimeout as delay } from "node:timers/promises";
import { hasPublishedSet, publishSet, readCurrentSet, retireSuperseded } from "./publisher.js";
import { clearEnrollment, clearRenewal, pendingEnrollment, pendingRenewal, recordEnrollment, recordRenewal } from "./enrollment-journal.js";
import { runReload } from "./reload.js";
import { backoffDelay, DEFAULT_BACKOFF, ocspRefreshTime, renewalTime, type BackoffPolicy } from "./schedule.js";
import { acceptRoots, refreshTrust, sha256Hex as rootFingerprintOf, type TrustAnchors } from "./trust.js";
import type { AgentMetrics } from "./agent-metrics.js";
import { DEFAULT_RETRY_AFTER_MS, fetchRenewalInfo, pickRenewalTime } from "./renewal-info.js";

/**
 * The set's files, named as certbot names them (and SPEC lists them): cert.pem the leaf,
 * chain.pem the intermediates only, fullchain.pem the leaf followed by the intermediates (what
 * nginx's ssl_certificate and most servers want).
 */
export const FILES = { key: "key.pem", cert: "cert.pem", chain: "chain.pem", fullchain: "fullchain.pem", ca: "ca.pem", ocsp: "ocsp.der" } as const;

/**
 * With --bundle: the private key, then the leaf and the intermediates, in one 0600 file. For
 * readers that open one path and cannot resolve the set's symlinks once (the shape Kubernetes'
 * pod certificates, KEP-4317, and the SPIFFE filesystem delivery proposal recommend): one file
 * can never pair a key with another set's certificate.
 */
export const BUNDLE_FILE = "bundle.pem";

/** The daemon's vocabulary (pino): info for the routine, warn for a retried failure, error for what needs a human or a new token. */
export type LogLevel = "info" | "warn" | "error";

/** `level` defaults to info. Fields never carry the token or a key. */
export type LogFn = (event: string, fields?: Record<string, string | number | boolean | undefined>, level?: LogLevel) => void;

/**
 * How often --token-file is re-read while waiting for a new token after the CA refused the old
 * one. A read of a small local file: cheap enough every few seconds, and quick enough that an
 * operator (or a kubelet rotating a projected token) is not kept waiting.
 */
export const TOKEN_POLL_MS = 5_000;

/** What a sleep of the loop waits for, as the "sleeping" line names it. */
export type WaitFor = "renewal" | "ocsp refresh" | "renewal info" | "new token" | "retry";

function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export interface AgentOptions {
  caUrl: string;
  /** Normalised (lower-case hex) SHA-256 root fingerprint. */
  fingerprint: string;
  tokenFile: string;
  outDir: string;
  sans: string[];
  reloadCmd?: string;
  reloadTimeoutMs?: number;
  clock: Clock;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  random: () => number;
  log: LogFn;
  backoff?: BackoffPolicy;
  /** Prometheus figures (--metrics-listen); absent, nothing is counted. */
  metrics?: AgentMetrics;
  /** Also publish BUNDLE_FILE (--bundle). */
  bundle?: boolean;
  /**
   * Poll GET /v1/renewal-info for the current certificate (default true). Off only where a test
   * drives the loop's every wake-up by hand and renewal info is not what it checks.
   */
  renewalInfo?: boolean;
}

/** What is published now: enough to republish with a fresh OCSP response and to schedule. */
export interface CurrentSet {
  keyPem: string;
  certPem: string;
  /** Intermediates (chain.pem). */
  intermediatesPem: string;
  notBefore: Date;
  notAfter: Date;
  serial: string;
  renewAt: Date;
  ocsp?: Buffer;
  ocspRefreshAt?: Date;
}

function certTimes(certPem: string): { notBefore: Date; notAfter: Date; serial: string } {
  const c = new X509Certificate(certPem);
  return { notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo), serial: c.serialNumber.toLowerCase() };
}

/**
 * The agent's whole life cycle: pin the roots, obtain a cert (token) or renew it (mTLS, new key
 * every time), fetch its OCSP response, publish the five files as one set, run the reload command;
 * then sleep until 2/3 of the lifetime (or half the OCSP validity) and do it again.
 */
/**
 * How long the replaced set stays after a publication: long enough for a reader that resolved
 * ..data just before the swap to open its files; then it goes, private key included. Real time
 * (not the injected clock): it is about real readers of a real directory.
 */
const RETIRE_GRACE_MS = 2_000;

export class Agent {
  #anchors: TrustAnchors | undefined;
  #retiring: Promise<void> = Promise.resolve();
  /** Aborts the loop's current sleep (one controller per sleep, so a wake-up never leaks into the next). */
  #wake: AbortController | null = null;
  /** renewNow()'s reason, until the loop acts on it. */
  #forced: string | null = null;
  /** reattest()'s reason, until a certificate obtained with the token is published. */
  #reattest: string | null = null;
  /**
   * renewNow()/reattest() was called since the loop's current attempt began: its next sleep is
   * skipped. Cleared at each attempt, so a standing re-attest that keeps failing (CA down) still
   * backs off instead of spinning.
   */
  #wakePending = false;
  /** SHA-256 of the token last sent to /v1/sign (the token itself is never kept or logged). */
  #lastTokenHash: string | null = null;
  /** When the loop next asks GET /v1/renewal-info for the current certificate (RFC 9773 §4.3). */
  #infoCheckAt = 0;
  /** The last window the CA suggested ("start/end" in ms), so a renewal time is drawn once per window. */
  #lastWindow: string | null = null;

  constructor(private readonly o: AgentOptions) {}

  async trust(): Promise<TrustAnchors> {
    if (!this.#anchors) {
      this.#anchors = await this.#pinRoots();
      this.o.log("roots pinned", { roots: this.#anchors.ders.length });
    }
    return this.#anchors;
  }

  /**
   * bootstrapTrust's fetch-then-pin (trust.ts), with each failure coded: a bundle that holds
   * certificates but not the pinned root is `fingerprint_mismatch` (fatal), while a CA that
   * answers 5xx at that moment is `ca_error` (retried), which the loop must tell apart.
   */
  async #pinRoots(): Promise<TrustAnchors> {
    const url = `${this.o.caUrl}/roots.pem`;
    const r = await httpsRequest(url, { method: "GET", insecure: true, timeoutMs: 10_000 });
    if (r.status !== 200) throw new AgentError(`GET ${url} answered HTTP ${r.status}`, r.status >= 500 || r.status === 429 ? "ca_error" : "bad_answer", r.status);
    const bundle = r.body.toString("utf8");
    try {
      return acceptRoots(bundle, this.o.fingerprint);
    } catch (e) {
      const ders = allPem(bundle, "CERTIFICATE");
      const mismatch = ders.length > 0 && !ders.some((d) => rootFingerprintOf(d) === this.o.fingerprint);
      throw new AgentError((e as Error).message, mismatch ? "fingerprint_mismatch" : "bad_answer");
    }
  }

  /**
   * Takes the CA's current /roots.pem when it changed and still holds the pinned root or a root
   * cross-signed by it (trust.ts refreshTrust), so a root rotation reaches every host's ca.pem
   * before leaves switch to the new root. Never fatal: a refused or unreachable bundle leaves
   * the anchors as they are (said at warn level), and the next publication asks again.
   */
  async #refreshRoots(): Promise<void> {
    if (!this.#anchors) return; // trust() pins them first, from the same bundle
    try {
      const next = await refreshTrust(this.o.caUrl, this.#anchors, this.o.fingerprint, 10_000, this.o.clock.now());
      if (next) {
        this.#anchors = next;
        this.o.log("roots refreshed", { roots: next.ders.length });
      }
    } catch (e) {
      this.o.log("roots refresh refused", { error: (e as Error).message }, "warn");
    }
  }

  /** Re-read each time: a kubelet rotates projected service-account tokens in place. */
  readToken(): string {
    let t: string;
    try {
      t = readFileSync(this.o.tokenFile, "utf8").trim();
    } catch (e) {
      throw new AgentError(`cannot read --token-file ${this.o.tokenFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, "token_file");
    }
    if (!t) throw new AgentError(`--token-file ${this.o.tokenFile} is empty`, "token_file");
    return t;
  }

  /** SHA-256 of --token-file's content (trimmed, as sent), or null when unreadable or empty. */
  #tokenFileHash(): string | null {
    try {
      return sha256Hex(this.readToken());
    } catch {
      return null;
    }
  }

  /** The set currently in --out, if a complete, parseable one is there. */
  readCurrent(): CurrentSet | null {
    const s = readCurrentSet(this.o.outDir, Object.values(FILES));
    const key = s?.[FILES.key];
    const cert = s?.[FILES.cert];
    const chain = s?.[FILES.chain];
    if (!key || !cert || !chain) return null;
    try {
      const certPem = cert.toString("utf8");
      const t = certTimes(certPem);
      // A set written before the certbot naming has the leaf first in chain.pem.
      const leaf = fromPem(certPem, ["CERTIFICATE"]);
      const inters = allPem(chain.toString("utf8"), "CERTIFICATE").filter((d) => !(leaf && Buffer.from(d).equals(Buffer.from(leaf))));
      return {
        keyPem: key.toString("utf8"),
        certPem,
        intermediatesPem: inters.map((d) => toPem(d, "CERTIFICATE")).join(""),
        ...t,
        renewAt: renewalTime(t.notBefore, t.notAfter, this.o.random()),
        ...(s[FILES.ocsp] && { ocsp: s[FILES.ocsp] }),
      };
    } catch {
      return null;
    }
  }

  /**
   * Renews over mTLS while the cert on disk is unexpired (the CA's renew needs a live cert);
   * once it has expired, only the token can get a new one (SPEC: fall back to the token).
   */
  async obtain(current: CurrentSet | null, opts: { viaToken?: boolean } = {}): Promise<{ answer: SignAnswer; keyPem: string; via: "sign" | "renew" }> {
    const anchors = await this.trust();
    const api = new CaApi(this.o.caUrl, anchors.pem);
    const now = this.o.clock.now();
    const expired = current !== null && current.notAfter.getTime() <= now.getTime();
    if (current && !expired && !opts.viaToken) {
      // The new key is written down before it is sent (enrollment-journal.ts: a retry must send
      // the same key, or the CA, which marked the current certificate superseded, refuses it).
      const dir = this.o.outDir;
      const pending = pendingRenewal(dir, current.serial) ?? recordRenewal(dir, current.serial, makeKeyAndCsr(this.o.sans), this.o.clock.now());
      try {
        const answer = await api.renew(pending.csrPem, { certAndChain: current.certPem + current.intermediatesPem, key: current.keyPem });
        return { answer, keyPem: pending.keyPem, via: "renew" };
      } catch (e) {
        // A 4xx is final (nothing committed): the next attempt may use a new key.
        if (e instanceof AgentError && e.status !== undefined && e.status >= 400 && e.status < 500) clearRenewal(dir);
        throw e;
      }
    }
    // Enrollment spends the token: record the request first, so a crash anywhere after this
    // retries the same request (same key, CSR and Idempotency-Key) rather than a new one.
    if (current && expired) {
      // The CA cannot renew an expired cert (RFC 5280 §4.1.2.5: it is not valid any more); the
      // set was left to lapse (CA down, host asleep): say so loudly, then use the token.
      this.o.log(
        "certificate expired",
        { serial: current.serial, expired_at: current.notAfter.toISOString(), action: "enrolling with --token-file" },
        "error",
      );
    }
    const token = this.readToken();
    this.#lastTokenHash = sha256Hex(token);
    this.o.log("enrolling", { token_file: this.o.tokenFile, reason: current ? (expired ? "expired" : "re-attest") : "no certificate" });
    const dir = this.o.outDir;
    const createdDir = !existsSync(dir);
    const pending = pendingEnrollment(dir, token) ?? recordEnrollment(dir, token, makeKeyAndCsr(this.o.sans), this.o.clock.now());
    try {
      const answer = await api.sign(pending.csrPem, token, pending.idempotencyKey);
      return { answer, keyPem: pending.keyPem, via: "sign" };
    } catch (e) {
      // A 4xx is the CA's final word on this request: nothing was committed, so the journal (and
      // the directory it alone needed) goes. A 5xx or a lost connection may have committed: keep it.
      if (e instanceof AgentError && e.status !== undefined && e.status >= 400 && e.status < 500) {
        clearEnrollment(dir);
        if (createdDir) rmSync(dir, { recursive: true, force: true });
      }
      throw e;
    }
  }

  async #ocspFor(certPem: string, intermediatesPem: string): Promise<(OcspResult & { refreshAt: Date }) | undefined> {
    const leaf = fromPem(certPem, ["CERTIFICATE"]);
    const issuer = allPem(intermediatesPem, "CERTIFICATE")[0];
    if (!leaf || !issuer) return undefined;
    try {
      const r = await fetchOcsp(leaf, issuer, this.o.clock.now());
      this.o.metrics?.ocspRefresh("ok");
      this.o.log(
        "ocsp fetched",
        { status: r.status, this_update: r.thisUpdate.toISOString(), next_update: r.nextUpdate?.toISOString() },
        r.status === "good" ? "info" : "warn",
      );
      return { ...r, refreshAt: ocspRefreshTime(r.thisUpdate, r.nextUpdate, this.o.clock.now()) };
    } catch (e) {
      // Stapling is an optimisation: a cert without a fresh OCSP response is still published.
      this.o.metrics?.ocspRefresh("error");
      this.o.log("ocsp fetch failed", { error: (e as Error).message }, "warn");
      return undefined;
    }
  }

  /**
   * A revoked answer is never stapled (a TLS client would reject the handshake, RFC 6066 §8) and
   * never published: the certificate itself is dead, so the caller re-attests with the token.
   */
  #refuseRevoked(serial: string, ocsp: OcspResult | undefined): void {
    if (ocsp?.status !== "revoked") return;
    throw new AgentError(`the CA's OCSP responder says certificate ${serial} is revoked; not publishing it`, "cert_refused");
  }

  async #publish(set: CurrentSet): Promise<void> {
    const anchors = await this.trust();
    const files = [
      { name: FILES.key, data: set.keyPem, mode: 0o600 },
      { name: FILES.cert, data: set.certPem, mode: 0o644 },
      { name: FILES.chain, data: set.intermediatesPem, mode: 0o644 },
      { name: FILES.fullchain, data: set.certPem + set.intermediatesPem, mode: 0o644 },
      { name: FILES.ca, data: anchors.pem, mode: 0o644 },
      ...(set.ocsp ? [{ name: FILES.ocsp, data: set.ocsp, mode: 0o644 }] : []),
      ...(this.o.bundle ? [{ name: BUNDLE_FILE, data: set.keyPem + set.certPem + set.intermediatesPem, mode: 0o600 }] : []),
    ];
    const replacing = hasPublishedSet(this.o.outDir);
    const version = publishSet(this.o.outDir, files, this.o.clock.now());
    this.o.log("published", { dir: this.o.outDir, version, serial: set.serial, ocsp: Boolean(set.ocsp) });
    if (this.o.reloadCmd) {
      const r = await runReload(this.o.reloadCmd, this.o.reloadTimeoutMs);
      this.o.log(r.ok ? "reload ok" : "reload failed", { detail: r.detail }, r.ok ? "info" : "warn");
    }
    if (!replacing) return; // a first publication replaced nothing
    const dir = this.o.outDir;
    this.#retiring = this.#retiring
      .then(() => delay(RETIRE_GRACE_MS))
      .then(() => {
        const n = retireSuperseded(dir);
        if (n > 0) this.o.log("retired superseded sets", { dir, count: n });
      })
      .catch((e: unknown) => this.o.log("retiring superseded sets failed", { dir, error: (e as Error).message }, "warn"));
  }

  /** Resolves once the sets this agent replaced are gone (`--once` waits for it before exiting). */
  settled(): Promise<void> {
    return this.#retiring;
  }

  /**
   * Obtains (renews, or enrolls with the token when there is no live cert or `viaToken`), fetches
   * OCSP, publishes, reloads.
   */
  async issueAndPublish(current: CurrentSet | null = this.readCurrent(), opts: { viaToken?: boolean } = {}): Promise<CurrentSet> {
    await this.#refreshRoots();
    let obtained: Awaited<ReturnType<Agent["obtain"]>>;
    try {
      obtained = await this.obtain(current, opts);
    } catch (e) {
      this.o.metrics?.renewal("error", opts.viaToken || !current || current.notAfter <= this.o.clock.now() ? "sign" : "renew");
      throw e;
    }
    const { answer, keyPem, via } = obtained;
    this.o.metrics?.renewal("ok", via);
    const obtainedAt = this.o.clock.now();
    const t = certTimes(answer.certificate);
    this.o.log(via === "renew" ? "renewed" : "issued", { serial: t.serial, not_after: t.notAfter.toISOString(), previous: current?.serial });
    const ocsp = await this.#ocspFor(answer.certificate, answer.chain);
    this.#refuseRevoked(t.serial, ocsp);
    const set: CurrentSet = {
      keyPem,
      certPem: answer.certificate,
      intermediatesPem: answer.chain,
      ...t,
      renewAt: renewalTime(t.notBefore, t.notAfter, this.o.random(), obtainedAt),
      ...(ocsp && { ocsp: ocsp.der, ocspRefreshAt: ocsp.refreshAt }),
    };
    await this.#publish(set);
    // Published: the request it recorded is done.
    if (via === "sign") clearEnrollment(this.o.outDir);
    else clearRenewal(this.o.outDir);
    this.o.metrics?.certificate(set.serial, set.notAfter);
    this.o.metrics?.success(this.o.clock.now());
    return set;
  }

  /** Republishes the same key and cert with a fresh OCSP response. */
  async refreshOcsp(set: CurrentSet): Promise<CurrentSet> {
    await this.#refreshRoots();
    const ocsp = await this.#ocspFor(set.certPem, set.intermediatesPem);
    if (!ocsp) throw new AgentError("OCSP refresh failed", "ocsp");
    this.#refuseRevoked(set.serial, ocsp);
    const next = { ...set, ocsp: ocsp.der, ocspRefreshAt: ocsp.refreshAt };
    await this.#publish(next);
    this.o.metrics?.success(this.o.clock.now());
    return next;
  }

  /**
   * One issuance (`--once`). A current cert the CA refuses (revoked, unknown) is replaced with the
   * token at once, as the loop does; token refusals are final here (the caller exits non-zero).
   */
  async runOnce(): Promise<CurrentSet> {
    const current = this.readCurrent();
    try {
      return await this.issueAndPublish(current);
    } catch (e) {
      if (errorCode(e) !== "cert_refused" || !current) throw e;
      this.o.log("re-attesting", { serial: current.serial, reason: (e as Error).message }, "warn");
      return this.issueAndPublish(current, { viaToken: true });
    }
  }

  /**
   * Asks the CA when to renew this certificate (GET /v1/renewal-info, fleetca's form of RFC 9773
   * ACME Renewal Information) and follows it: a window the CA pulled forward (`fleetca
   * renew-window`, a kill switch, an intermediate rotation) moves the renewal to a random moment
   * inside it, so a fleet told together renews spread out; "revoked" makes the agent re-attest
   * with the token at once, within one polling interval of the revocation. Any failure leaves the
   * agent's own schedule as it is (RFC 9773 §4.2: no valid answer means keep your own) and asks
   * again after the default interval.
   */
  async #checkRenewalInfo(set: CurrentSet): Promise<void> {
    const now = this.o.clock.now();
    try {
      const anchors = await this.trust();
      const info = await fetchRenewalInfo(this.o.caUrl, anchors.pem, set.serial);
      this.#infoCheckAt = now.getTime() + info.retryAfterMs;
      if (info.status !== "good") {
        this.o.log("renewal info says the certificate is " + info.status, { serial: set.serial }, "warn");
        if (info.status === "revoked") this.reattest(`renewal info: certificate ${set.serial} is revoked`);
        else set.renewAt = now; // expired by the CA's clock: renew (or enroll) now
        return;
      }
      const key = `${info.start.getTime()}/${info.end.getTime()}`;
      if (key === this.#lastWindow) return;
      this.#lastWindow = key;
      // Our own 2/3 ± 1/20 time already lies in the CA's default window; a window that ends
      // before it (pulled forward) gets a fresh random moment inside it.
      if (info.end.getTime() < set.renewAt.getTime()) {
        set.renewAt = pickRenewalTime(info, now, this.o.random());
        this.o.log("renewal window moved by the CA", {
          serial: set.serial,
          window_start: info.start.toISOString(),
          window_end: info.end.toISOString(),
          renew_at: set.renewAt.toISOString(),
          ...(info.explanation !== undefined && { explanation: info.explanation }),
        });
      }
    } catch (e) {
      this.#infoCheckAt = now.getTime() + DEFAULT_RETRY_AFTER_MS;
      this.o.log("renewal info unavailable", { code: errorCode(e), error: (e as Error).message, action: "keeping the own schedule" }, "warn");
    }
  }

  /**
   * Renew now, whatever the schedule (SIGHUP). Wakes the loop's sleep; while the loop waits for a
   * new token, it retries the token in --token-file once even if unchanged (an operator asking).
   */
  renewNow(reason = "requested"): void {
    this.#forced = reason;
    this.#wakePending = true;
    this.#wake?.abort();
  }

  /**
   * The current certificate must not be used or renewed any more (revoked, as OCSP or
   * renewal-info said): enroll with the token in --token-file at once. Wakes the loop's sleep;
   * stays in force until a certificate obtained with a token is published.
   */
  reattest(reason: string): void {
    this.#reattest = reason;
    this.#wakePending = true;
    this.#wake?.abort();
  }

  /**
   * Sleeps `ms` unless renewNow()/reattest() came first (asked while the loop was busy) or comes
   * during the sleep; logs what it waits for unless `quiet`.
   */
  async #sleep(ms: number, signal: AbortSignal, waitingFor: WaitFor, quiet = false): Promise<void> {
    if (this.#wakePending) return;
    const wake = new AbortController();
    this.#wake = wake;
    if (!quiet) this.o.log("sleeping", { waiting_for: waitingFor, until: new Date(this.o.clock.now().getTime() + ms).toISOString(), ms });
    try {
      await this.o.sleep(ms, AbortSignal.any([signal, wake.signal]));
    } finally {
      this.#wake = null;
    }
  }

  /**
   * The long-running loop. Returns when `signal` aborts; throws only for a wrong root pin
   * (retrying cannot fix it).
   *
   * - CA unreachable or failing (5xx, 429): back off exponentially with jitter (honouring
   *   Retry-After), reset on success; the published set stays as it is meanwhile.
   * - The CA refuses the current cert (401 revoked / unknown on /v1/renew, or OCSP says revoked):
   *   re-attest with the token at once, no backoff.
   * - The CA refuses the token (replayed, or any other 401/403 on /v1/sign): never resend it;
   *   poll --token-file every TOKEN_POLL_MS and enroll as soon as its content (hash) changes.
   */
  async run(signal: AbortSignal): Promise<void> {
    let set = this.readCurrent();
    if (set) {
      this.o.log("found existing", { serial: set.serial, not_after: set.notAfter.toISOString(), renew_at: set.renewAt.toISOString() });
      this.o.metrics?.certificate(set.serial, set.notAfter);
      set.ocspRefreshAt = this.o.clock.now(); // no record of when ocsp.der was fetched: refresh now
    }
    // An existing set's renewal info is asked for at once (it may have been revoked, or its
    // window pulled forward, while the agent was down); a set published by this loop after one interval.
    let currentSerial = set?.serial;
    this.#infoCheckAt = this.o.renewalInfo === false ? Infinity : this.o.clock.now().getTime();
    let failures = 0;
    /** Hash of the token the CA refused: while set, the loop waits for --token-file to change. */
    let refusedToken: string | null = null;
    let announcedWait = false;
    while (!signal.aborted) {
      const now = this.o.clock.now().getTime();
      this.#wakePending = false;
      try {
        if (refusedToken !== null) {
          // Waiting to enroll with a new token already covers a re-attest request.
          this.#reattest = null;
          const forced = this.#forced;
          this.#forced = null;
          const h = this.#tokenFileHash();
          if (forced === null && (h === null || h === refusedToken)) {
            // One "sleeping" line per wait, not one per poll.
            await this.#sleep(TOKEN_POLL_MS, signal, "new token", announcedWait);
            announcedWait = true;
            continue;
          }
          this.o.log(forced === null ? "token file changed" : "retrying the token on request", { token_file: this.o.tokenFile, ...(forced !== null && { reason: forced }) });
          set = await this.issueAndPublish(set, { viaToken: true });
          refusedToken = null;
          this.#reattest = null;
        } else if (this.#reattest !== null || this.#forced !== null || !set || now >= set.renewAt.getTime()) {
          const reattest = this.#reattest;
          if (reattest !== null) this.o.log("re-attesting", { serial: set?.serial, reason: reattest }, "warn");
          if (this.#forced !== null) this.o.log("renewing on request", { serial: set?.serial, reason: this.#forced });
          this.#forced = null;
          set = await this.issueAndPublish(set, { viaToken: reattest !== null });
          this.#reattest = null;
        } else if (set.ocspRefreshAt && now >= set.ocspRefreshAt.getTime()) {
          set = await this.refreshOcsp(set);
        } else if (now >= this.#infoCheckAt) {
          await this.#checkRenewalInfo(set);
        }
        if (set.serial !== currentSerial) {
          // A new certificate: its renewal info is asked for after one polling interval.
          currentSerial = set.serial;
          this.#lastWindow = null;
          if (this.o.renewalInfo !== false) this.#infoCheckAt = Math.max(this.#infoCheckAt, this.o.clock.now().getTime() + DEFAULT_RETRY_AFTER_MS);
        }
        failures = 0;
        const due: [number, WaitFor][] = [
          [set.renewAt.getTime(), "renewal"],
          [set.ocspRefreshAt?.getTime() ?? Infinity, "ocsp refresh"],
          [this.#infoCheckAt, "renewal info"],
        ];
        const [next, waitingFor] = due.reduce((a, b) => (b[0] < a[0] ? b : a));
        await this.#sleep(Math.max(0, next - this.o.clock.now().getTime()), signal, waitingFor);
      } catch (e) {
        const code = errorCode(e);
        const message = (e as Error).message;
        if (code === "fingerprint_mismatch") throw e;
        if (code === "token_spent" || code === "token_refused") {
          // Permanent for this token: resending it would be refused the same way (a jti is
          // accepted once, RFC 7519 §4.1.7), so wait for new content instead of a retry storm.
          refusedToken = this.#lastTokenHash ?? "";
          announcedWait = false;
          failures = 0;
          this.o.log("token refused", { code, error: message, action: `put a new token in ${this.o.tokenFile}` }, "error");
          continue;
        }
        if (code === "cert_refused" && this.#reattest === null) {
          // The CA will not renew this cert (revoked, unknown): backing off cannot help, the token can.
          this.#reattest = message;
          failures = 0;
          continue;
        }
        if (code === "token_file" && this.#reattest !== null) {
          // Nothing to re-attest with yet: said once per failure, at error level (a human must act).
          this.o.log("cannot re-attest", { reason: this.#reattest, error: message }, "error");
        }
        failures++;
        const policy = this.o.backoff ?? DEFAULT_BACKOFF;
        const retryAfter = e instanceof AgentError && e.retryAfterMs !== undefined ? Math.min(e.retryAfterMs, policy.maxMs) : 0;
        const delay = Math.max(backoffDelay(failures, this.o.random(), policy), retryAfter);
        this.o.log("attempt failed", { code, failures, retry_in_ms: delay, error: message }, "warn");
        // The OCSP refresh failed but the cert is fine: try OCSP again later, renew on schedule.
        if (set && set.ocspRefreshAt && now < set.renewAt.getTime()) set.ocspRefreshAt = new Date(this.o.clock.now().getTime() + delay);
        await this.#sleep(delay, signal, "retry");
      }
    }
  }
}
