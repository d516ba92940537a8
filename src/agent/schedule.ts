/**
 * When to act. Pure functions of times and a random number in [0,1), so the policy is
 * unit-testable with an injected clock and random source.
 */

import { RENEW_FRACTION, RENEW_JITTER } from "../core/renewal-window.js";

/** Kept exported from here for the agent's callers; defined in core/ so the CA's renewal-info uses the same policy. */
export { RENEW_FRACTION, RENEW_JITTER };

/**
 * start + lifetime × (2/3 ± 1/20). Leaves at least ~28% of the lifetime to retry in before
 * expiry, which is why renewing at 2/3 rather than near the end is the common practice
 * (cert-manager, step-ca's `--renew-period` default of 2/3).
 */
export function renewalTime(notBefore: Date, notAfter: Date, random: number, obtainedAt?: Date): Date {
  // The CA backdates notBefore (1 min) to absorb clock skew; for a cert we just received, that
  // slice was never usable, and with a short TTL it would put 2/3 in the past (a renewal spin).
  // So the lifetime starts at the later of notBefore and when we got the cert.
  const start = Math.max(notBefore.getTime(), obtainedAt?.getTime() ?? -Infinity);
  const life = Math.max(0, notAfter.getTime() - start);
  const frac = RENEW_FRACTION + (random * 2 - 1) * RENEW_JITTER;
  return new Date(start + life * frac);
}

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1_000, maxMs: 5 * 60_000 };

/**
 * Exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"): ceiling = min(max, base × 2^(failures-1)), delay uniform in [ceiling/2, ceiling].
 * Grows with consecutive failures (the lower bound doubles), bounded by maxMs, and the jitter
 * keeps a fleet that failed together (CA restart) from retrying in lockstep. The caller resets
 * `failures` to 0 on success.
 */
export function backoffDelay(failures: number, random: number, p: BackoffPolicy = DEFAULT_BACKOFF): number {
  const n = Math.max(1, failures);
  const ceiling = Math.min(p.maxMs, p.baseMs * 2 ** Math.min(n - 1, 40));
  return Math.round(ceiling / 2 + random * (ceiling / 2));
}

/** Fallback refresh interval when an OCSP response has no nextUpdate (RFC 6960 §4.2.2.1). */
export const OCSP_DEFAULT_REFRESH_MS = 60 * 60_000;

/** Refresh a stapled OCSP response at half its validity (thisUpdate…nextUpdate), as SPEC asks. */
export function ocspRefreshTime(thisUpdate: Date, nextUpdate: Date | undefined, now?: Date): Date {
  const half = nextUpdate
    ? thisUpdate.getTime() + (nextUpdate.getTime() - thisUpdate.getTime()) / 2
    : thisUpdate.getTime() + OCSP_DEFAULT_REFRESH_MS;
  // A responder may serve a pre-produced response past its half-life (RFC 5019 §6 caching); never
  // schedule the next fetch sooner than a minute from now, or a stale cached answer would spin us.
  return new Date(now ? Math.max(half, now.getTime() + OCSP_MIN_REFRESH_MS) : half);
}

export const OCSP_MIN_REFRESH_MS = 60_000;

/** Sleeps `ms`, resolving early when `signal` aborts. setTimeout caps at 2^31-1 ms, so loop. */
export async function realSleep(ms: number, signal?: AbortSignal): Promise<void> {
  let left = Math.max(0, ms);
  while (left > 0 && !signal?.aborted) {
    const step = Math.min(left, 2 ** 31 - 1);
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, step);
      function done() {
        clearTimeout(t);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    });
    left -= step;
  }
}
