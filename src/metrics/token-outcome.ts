import { CaError, type TokenRejection } from "../core/errors.js";

/** Every TokenRejection, so the compiler says when one is added and not listed here. */
const REJECTIONS: Record<TokenRejection, true> = {
  malformed: true,
  expired: true,
  not_yet_valid: true,
  bad_signature: true,
  unknown_kid: true,
  unknown_issuer: true,
  wrong_audience: true,
  wrong_issuer: true,
  replayed: true,
  alg_not_allowed: true,
  missing_claim: true,
  missing_token: true,
  jwks_unavailable: true,
  missing_client_certificate: true,
  unknown_certificate: true,
  revoked: true,
};

/**
 * The reason label of a refused token: the SPEC reason an `unauthorized` CaError starts with
 * ("replayed", "missing_claim: aud"), taken from the closed list above and never from the
 * message's detail or anything the token said; null when the error is not a token refusal.
 */
export function tokenRejectionOf(err: unknown): TokenRejection | "other" | null {
  if (!(err instanceof CaError) || err.code !== "unauthorized") return null;
  const head = err.message.split(":", 1)[0]!;
  return Object.hasOwn(REJECTIONS, head) ? (head as TokenRejection) : "other";
}
