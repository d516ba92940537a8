import { createHash } from "node:crypto";
import type { Clock } from "../core/clock.js";
import type { Issuer } from "../issuance/issuer.js";
import { verifySignature } from "../issuance/sign-tbs.js";
import type { HealthProbe } from "../storage/ports.js";

/** What /healthz reports: any error makes it 503; warnings ride along with a 200. */
export interface HealthReport {
  errors: string[];
  warnings: string[];
}

/** A signature costs little, but /healthz may be polled hard: the probe's result is kept this long. */
const SIGNER_PROBE_CACHE_MS = 10_000;

/**
 * How long the database probe may take before it counts as not answering. A load balancer's
 * health check typically times out after a few seconds; answering 503 before that tells it the
 * truth, where a /healthz hung on a stuck database would look like a dead process, or pile up.
 */
export const DATABASE_PROBE_TIMEOUT_MS = 2_000;

/**
 * The checks every process that serves /healthz makes for itself: its database connection
 * answers, and its signer makes a signature that verifies under the issuer's certificate (a key
 * that cannot sign is an outage even when everything else is up). `more` adds what the process
 * knows besides (CRL publication; in a public worker, the primary's own report).
 */
export function createHealthCheck(
  store: HealthProbe,
  /** The signer to probe: the current intermediate's (a getter, as a rotation replaces it). */
  issuer: Issuer | (() => Issuer),
  clock: Clock,
  more: () => HealthReport | Promise<HealthReport>,
  databaseTimeoutMs: number = DATABASE_PROBE_TIMEOUT_MS,
): () => Promise<HealthReport> {
  let lastProbe = { at: -Infinity, ok: false };
  return async () => {
    const errors: string[] = [];
    if (!(await databaseAnswers(store, databaseTimeoutMs))) errors.push("database does not answer");
    const now = clock.now().getTime();
    if (now - lastProbe.at > SIGNER_PROBE_CACHE_MS) lastProbe = { at: now, ok: await probeSigner(typeof issuer === "function" ? issuer() : issuer) };
    if (!lastProbe.ok) errors.push("signer does not answer");
    const m = await more();
    return { errors: [...errors, ...m.errors], warnings: m.warnings };
  };
}

/**
 * The probe's answer, false when it rejects or has not answered within `timeoutMs`; also what
 * fleetca_storage_up reports (daemon.ts), so the metric and /healthz cannot disagree on "up".
 */
export async function databaseAnswers(store: HealthProbe, timeoutMs: number = DATABASE_PROBE_TIMEOUT_MS): Promise<boolean> {
  let ping: Promise<boolean>;
  try {
    ping = store.ping();
  } catch {
    return false;
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
    timer.unref();
  });
  try {
    // A ping that settles after the timeout is dropped (its rejection too: .catch is attached).
    return await Promise.race([ping.catch(() => false), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

async function probeSigner(issuer: Issuer): Promise<boolean> {
  try {
    const probe = createHash("sha256").update(`health ${Date.now()}`).digest();
    return verifySignature(issuer.info.spki, issuer.signer.keyType, probe, await issuer.signer.sign(probe));
  } catch {
    return false;
  }
}
