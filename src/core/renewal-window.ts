/**
 * The renewal window: when a certificate's holder should renew it. Shared by the CA, which
 * suggests it (GET /v1/renewal-info, RFC 9773 §4.2), and the agent, which falls back to it when
 * the CA does not answer; so both sides agree on one policy.
 */

/** Fraction of the lifetime after which to renew (SPEC: two thirds). */
export const RENEW_FRACTION = 2 / 3;
/** ± this fraction of the lifetime, so a fleet issued together does not renew together. */
export const RENEW_JITTER = 1 / 20;

export interface RenewalWindow {
  start: Date;
  end: Date;
}

/**
 * [notBefore + life × (2/3 − 1/20), notBefore + life × (2/3 + 1/20)]: the span the agent's own
 * jittered renewalTime draws from (agent/schedule.ts), as a window a CA can hand out.
 */
export function defaultRenewalWindow(notBefore: Date, notAfter: Date): RenewalWindow {
  const start = notBefore.getTime();
  const life = Math.max(0, notAfter.getTime() - start);
  return {
    start: new Date(start + life * (RENEW_FRACTION - RENEW_JITTER)),
    end: new Date(start + life * (RENEW_FRACTION + RENEW_JITTER)),
  };
}
