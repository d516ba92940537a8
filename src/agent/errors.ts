/**
 * What went wrong, as a closed set the agent's loop (and anything wiring into it) decides on.
 * The message is for the operator; the code is for code: nothing classifies by message text.
 *
 * - fingerprint_mismatch: the CA's /roots.pem does not hold the pinned root. Fatal: retrying
 *   cannot fix a pin.
 * - unreachable: no HTTP answer (connection refused, reset, TLS failure, timeout). Back off.
 * - token_spent: /v1/sign said 401 `replayed`: this token was used already (a `jti` is accepted
 *   once). Permanent for that token: wait for new content in --token-file.
 * - token_refused: any other 401/403 on /v1/sign (expired, bad signature, wrong audience, policy).
 *   Permanent for that token, as token_spent.
 * - cert_refused: the CA will not take the current certificate as a credential (401 on /v1/renew:
 *   `revoked`, `unknown_certificate`, `expired`…; 403 when the provisioner's renewal rules end the
 *   chain: `provisioner_removed`, `renewal_not_allowed`, `renewal_age_exceeded`, `superseded`), or
 *   its OCSP responder says it is revoked. Only the token can get a new one: re-attest at once.
 * - bad_request: any other 4xx (our request was wrong; retrying it as is will not help soon).
 * - ca_error: 5xx or 429: the CA could not serve now. Back off.
 * - bad_answer: a non-2xx/unparseable answer where a certificate or bundle was expected, or a
 *   body above the size cap.
 * - token_file: --token-file cannot be read or is empty.
 * - ocsp: the OCSP response could not be fetched or checked (stapling is optional: the set stays).
 * - other: raised by code that does not classify its errors (yet).
 */
export type AgentErrorCode =
  | "fingerprint_mismatch"
  | "unreachable"
  | "token_spent"
  | "token_refused"
  | "cert_refused"
  | "bad_request"
  | "ca_error"
  | "bad_answer"
  | "token_file"
  | "ocsp"
  | "other";

/**
 * An error whose message is fit for the operator as is: the CLI prints it as one line
 * `cert-agent: <message>` and exits non-zero. Never carries the token or a key.
 */
export class AgentError extends Error {
  constructor(
    message: string,
    readonly code: AgentErrorCode = "other",
    /** HTTP status from the CA when the CA answered with an error. */
    readonly status?: number,
    /** The CA's Retry-After (RFC 9110 §10.2.3), in ms, when it sent one with a 429/503. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "AgentError";
  }
}

/** The code of any thrown value: an AgentError's own, else "other". */
export function errorCode(e: unknown): AgentErrorCode {
  return e instanceof AgentError ? e.code : "other";
}
