import { errors } from "jose";
import { CaError } from "../core/errors.js";

/** Maps jose's verification errors to SPEC.md's `unauthorized` reasons, never echoing the token. */
export function tokenErrorFromJose(e: unknown): CaError {
  if (e instanceof CaError) return e;
  if (e instanceof errors.JWTExpired) return CaError.unauthorized("expired");
  if (e instanceof errors.JWTClaimValidationFailed) {
    switch (e.claim) {
      case "nbf":
      case "iat":
        return e.reason === "missing" ? CaError.unauthorized("missing_claim", e.claim) : CaError.unauthorized("not_yet_valid");
      case "aud":
        return e.reason === "missing" ? CaError.unauthorized("missing_claim", "aud") : CaError.unauthorized("wrong_audience");
      case "iss":
        return CaError.unauthorized("wrong_issuer");
      default:
        return CaError.unauthorized("missing_claim", e.claim);
    }
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) return CaError.unauthorized("bad_signature");
  if (e instanceof errors.JOSEAlgNotAllowed) return CaError.unauthorized("alg_not_allowed");
  if (e instanceof errors.JOSEError) return CaError.unauthorized("malformed");
  return CaError.unauthorized("malformed");
}
