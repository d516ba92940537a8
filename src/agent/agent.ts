import { existsSync, readFileSync, rmSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { allPem, fromPem, toPem } from "../x509/pem.js";
import { CaApi, type SignAnswer } from "./ca-client.js";
import { makeKeyAndCsr } from "./csr.js";
import { AgentError } from "./errors.js";
import { fetchOcsp } from "./ocsp-fetch.js";
import { setTimeout as delay } from "node:timers/promises";
import { hasPublishedSet, publishSet, readCurrentSet, retireSuperseded } from "./publisher.js";
import { clearEnrollment, pendingEnrollment, recordEnrollment } from "./enrollment-journal.js";
import { runReload } from "./reload.js";
import { backoffDelay, DEFAULT_BACKOFF, ocspRefreshTime, renewalTime, type BackoffPolicy } from "./schedule.js";
import { bootstrapTrust, type TrustAnchors } from "./trust.js";

/**
 * The set's files, named as certbot names them (and SPEC lists them): cert.pem the leaf,
 * chain.pem the intermediates only, fullchain.pem the leaf followed by the intermediates (what
 * nginx's ssl_certificate and most servers want).
 */
export const FILES = { key: "key.pem", cert: "cert.pem", chain: "chain.pem", fullchain: "fullchain.pem", ca: "ca.pem", ocsp: "ocsp.der" } as const;

export type LogFn = (event: string, fields?: Record<string, string | number | boolean | undefined>) => void;

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

  constructor(private readonly o: AgentOptions) {}

  async trust(): Promise<TrustAnchors> {
    if (!this.#anchors) {
      this.#anchors = await bootstrapTrust(this.o.caUrl, this.o.fingerprint);
      this.o.log("roots pinned", { roots: this.#anchors.ders.length });
    }
    return this.#anchors;
  }

  /** Re-read each time: a kubelet rotates projected service-account tokens in place. */
  readToken(): string {
    let t: string;
    try {
      t = readFileSync(this.o.tokenFile, "utf8").trim();
    } catch (e) {
      throw new AgentError(`cannot read --token-file ${this.o.tokenFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    if (!t) throw new AgentError(`--token-file ${this.o.tokenFile} is empty`);
    return t;
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
  async obtain(current: CurrentSet | null): Promise<{ answer: SignAnswer; keyPem: string; via: "sign" | "renew" }> {
    const anchors = await this.trust();
    const api = new CaApi(this.o.caUrl, anchors.pem);
    if (current && current.notAfter.getTime() > this.o.clock.now().getTime()) {
      const fresh = makeKeyAndCsr(this.o.sans);
      const answer = await api.renew(fresh.csrPem, { certAndChain: current.certPem + current.intermediatesPem, key: current.keyPem });
      return { answer, keyPem: fresh.keyPem, via: "renew" };
    }
    // Enrollment spends the token: record the request first, so a crash anywhere after this
    // retries the same request (same key, CSR and Idempotency-Key) rather than a new one.
    const token = this.readToken();
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

  async #ocspFor(certPem: string, intermediatesPem: string): Promise<{ der: Buffer; refreshAt: Date } | undefined> {
    const leaf = fromPem(certPem, ["CERTIFICATE"]);
    const issuer = allPem(intermediatesPem, "CERTIFICATE")[0];
    if (!leaf || !issuer) return undefined;
    try {
      const r = await fetchOcsp(leaf, issuer);
      this.o.log("ocsp fetched", { status: r.status, this_update: r.thisUpdate.toISOString(), next_update: r.nextUpdate?.toISOString() });
      return { der: r.der, refreshAt: ocspRefreshTime(r.thisUpdate, r.nextUpdate, this.o.clock.now()) };
    } catch (e) {
      // Stapling is an optimisation: a cert without a fresh OCSP response is still published.
      this.o.log("ocsp fetch failed", { error: (e as Error).message });
      return undefined;
    }
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
    ];
    const replacing = hasPublishedSet(this.o.outDir);
    const version = publishSet(this.o.outDir, files, this.o.clock.now());
    this.o.log("published", { dir: this.o.outDir, version, serial: set.serial, ocsp: Boolean(set.ocsp) });
    if (this.o.reloadCmd) {
      const r = await runReload(this.o.reloadCmd, this.o.reloadTimeoutMs);
      this.o.log(r.ok ? "reload ok" : "reload failed", { detail: r.detail });
    }
    if (!replacing) return; // a first publication replaced nothing
    const dir = this.o.outDir;
    this.#retiring = this.#retiring
      .then(() => delay(RETIRE_GRACE_MS))
      .then(() => {
        const n = retireSuperseded(dir);
        if (n > 0) this.o.log("retired superseded sets", { dir, count: n });
      })
      .catch((e: unknown) => this.o.log("retiring superseded sets failed", { dir, error: (e as Error).message }));
  }

  /** Resolves once the sets this agent replaced are gone (`--once` waits for it before exiting). */
  settled(): Promise<void> {
    return this.#retiring;
  }

  /** Obtains (or renews), fetches OCSP, publishes, reloads. */
  async issueAndPublish(current: CurrentSet | null = this.readCurrent()): Promise<CurrentSet> {
    const { answer, keyPem, via } = await this.obtain(current);
    const obtainedAt = this.o.clock.now();
    const t = certTimes(answer.certificate);
    this.o.log(via === "renew" ? "renewed" : "issued", { serial: t.serial, not_after: t.notAfter.toISOString(), previous: current?.serial });
    const ocsp = await this.#ocspFor(answer.certificate, answer.chain);
    const set: CurrentSet = {
      keyPem,
      certPem: answer.certificate,
      intermediatesPem: answer.chain,
      ...t,
      renewAt: renewalTime(t.notBefore, t.notAfter, this.o.random(), obtainedAt),
      ...(ocsp && { ocsp: ocsp.der, ocspRefreshAt: ocsp.refreshAt }),
    };
    await this.#publish(set);
    // Published: the enrollment it recorded is done (a renewal never recorded one).
    if (via === "sign") clearEnrollment(this.o.outDir);
    return set;
  }

  /** Republishes the same key and cert with a fresh OCSP response. */
  async refreshOcsp(set: CurrentSet): Promise<CurrentSet> {
    const ocsp = await this.#ocspFor(set.certPem, set.intermediatesPem);
    if (!ocsp) throw new AgentError("OCSP refresh failed");
    const next = { ...set, ocsp: ocsp.der, ocspRefreshAt: ocsp.refreshAt };
    await this.#publish(next);
    return next;
  }

  async runOnce(): Promise<CurrentSet> {
    return this.issueAndPublish();
  }

  /**
   * The long-running loop. Failures back off exponentially with jitter and reset on success;
   * a wrong root fingerprint is fatal (retrying cannot fix a pin). Returns when `signal` aborts.
   */
  async run(signal: AbortSignal): Promise<void> {
    let set = this.readCurrent();
    if (set) {
      this.o.log("found existing", { serial: set.serial, not_after: set.notAfter.toISOString(), renew_at: set.renewAt.toISOString() });
      set.ocspRefreshAt = this.o.clock.now(); // no record of when ocsp.der was fetched: refresh now
    }
    let failures = 0;
    while (!signal.aborted) {
      const now = this.o.clock.now().getTime();
      try {
        if (!set || now >= set.renewAt.getTime()) set = await this.issueAndPublish(set);
        else if (set.ocspRefreshAt && now >= set.ocspRefreshAt.getTime()) set = await this.refreshOcsp(set);
        failures = 0;
        const next = Math.min(set.renewAt.getTime(), set.ocspRefreshAt?.getTime() ?? Infinity);
        const wait = Math.max(0, next - this.o.clock.now().getTime());
        this.o.log("sleeping", { until: new Date(next).toISOString(), ms: wait });
        await this.o.sleep(wait, signal);
      } catch (e) {
        if (e instanceof AgentError && e.message.startsWith("root fingerprint mismatch")) throw e;
        failures++;
        const delay = backoffDelay(failures, this.o.random(), this.o.backoff ?? DEFAULT_BACKOFF);
        this.o.log("attempt failed", { failures, retry_in_ms: delay, error: (e as Error).message });
        // The OCSP refresh failed but the cert is fine: try OCSP again later, renew on schedule.
        if (set && set.ocspRefreshAt && now < set.renewAt.getTime()) set.ocspRefreshAt = new Date(this.o.clock.now().getTime() + delay);
        await this.o.sleep(delay, signal);
      }
    }
  }
}
