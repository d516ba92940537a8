import { CaError } from "./errors.js";

/** RFC 5280 §5.3.1 CRLReason: the enumeration's names and codes (7 is unassigned). */
export const CRL_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
} as const;

export type CrlReasonName = keyof typeof CRL_REASONS;
export type CrlReasonCode = (typeof CRL_REASONS)[CrlReasonName];

/**
 * The reasons a leaf certificate may be revoked with. The other four are refused:
 * - cACompromise / aACompromise speak of a CA's or attribute authority's key, never a leaf's;
 *   a compromised intermediate is answered by rotating it, not by revoking its leaves one by one.
 * - certificateHold is a reversible suspension (RFC 5280 §5.3.1 "hold"); fleetca's revocation is
 *   permanent (the CA/Browser Forum Baseline Requirements §4.9.13 forbid suspension outright),
 *   and a cert on hold would leave OCSP and the CRL to disagree about whether it can come back.
 * - removeFromCRL only exists in delta CRLs to lift a hold (RFC 5280 §5.3.1), so it has nothing
 *   to undo here.
 */
export const LEAF_REVOCATION_REASONS = [
  "unspecified",
  "keyCompromise",
  "affiliationChanged",
  "superseded",
  "cessationOfOperation",
  "privilegeWithdrawn",
] as const satisfies readonly CrlReasonName[];

export type RevocationReasonName = (typeof LEAF_REVOCATION_REASONS)[number];
export type RevocationReason = (typeof CRL_REASONS)[RevocationReasonName];

const REFUSED_BECAUSE: Partial<Record<CrlReasonName, string>> = {
  cACompromise: "cACompromise is for a CA key, not a leaf (rotate the intermediate instead)",
  aACompromise: "aACompromise is for an attribute authority, not a leaf",
  certificateHold: "certificateHold is not supported: revocation is permanent",
  removeFromCRL: "removeFromCRL only lifts a hold in a delta CRL; revocation is permanent",
};

/**
 * Reads a reason as a client or operator gives it: an RFC 5280 name ("keyCompromise") or its
 * code (1, or "1"). Absent means unspecified. Anything else is a bad_request naming the reason.
 */
export function parseRevocationReason(input: unknown): RevocationReason {
  if (input === undefined || input === null) return CRL_REASONS.unspecified;
  let name: CrlReasonName | undefined;
  if (typeof input === "number" || (typeof input === "string" && /^\d{1,2}$/.test(input))) {
    const code = Number(input);
    name = (Object.keys(CRL_REASONS) as CrlReasonName[]).find((n) => CRL_REASONS[n] === code);
  } else if (typeof input === "string") {
    name = (Object.keys(CRL_REASONS) as CrlReasonName[]).find((n) => n.toLowerCase() === input.toLowerCase());
  }
  if (name === undefined) {
    throw new CaError("bad_request", `unknown revocation reason; use one of ${LEAF_REVOCATION_REASONS.join(", ")} (or its RFC 5280 code)`);
  }
  const refused = REFUSED_BECAUSE[name];
  if (refused) throw new CaError("bad_request", refused);
  return CRL_REASONS[name as RevocationReasonName];
}

/** The RFC 5280 name of a stored CRLReason code, for records shown to people. */
export function crlReasonName(code: number): CrlReasonName | null {
  return (Object.keys(CRL_REASONS) as CrlReasonName[]).find((n) => CRL_REASONS[n] === code) ?? null;
}

/**
 * The reasons an intermediate may be put on its root's CRL (`fleetca revoke-issuer`): a leaf's,
 * plus cACompromise, which is for exactly this (RFC 5280 §5.3.1). keyCompromise is accepted too,
 * as operators say it; both mean the key is no longer trusted.
 */
export const ISSUER_REVOCATION_REASONS = [...LEAF_REVOCATION_REASONS, "cACompromise"] as const satisfies readonly CrlReasonName[];

/** Reads an issuer revocation reason by RFC 5280 name or code; anything else is a one-line OperatorError-worthy message. */
export function parseIssuerRevocationReason(input: string): CrlReasonCode {
  const name = (ISSUER_REVOCATION_REASONS as readonly string[]).find(
    (n) => n.toLowerCase() === input.toLowerCase() || String(CRL_REASONS[n as CrlReasonName]) === input,
  ) as CrlReasonName | undefined;
  if (name === undefined) throw new Error(`unknown or unsupported reason "${input.slice(0, 40)}"; use one of ${ISSUER_REVOCATION_REASONS.join(", ")} (or its RFC 5280 code)`);
  return CRL_REASONS[name];
}
