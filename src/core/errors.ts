/**
 * The closed set of error codes fleetca reports (SPEC.md "HTTP API"). Domain code throws CaError;
 * api/http-errors.ts is the one place a code becomes an HTTP status.
 */
export type CaErrorCode =
  | "bad_request"
  | "bad_csr"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  /** The request collides with a live one it cannot be (SPEC: an Idempotency-Key reused with another CSR). */
  | "conflict"
  | "too_large"
  | "rate_limited"
  | "internal"
  /** The service cannot answer right now (store cannot commit, no CRL published yet); retry later. */
  | "unavailable";

/** Why a token was refused; carried as the message of an `unauthorized` error. */
export type TokenRejection =
  | "malformed"
  | "expired"
  | "not_yet_valid"
  | "bad_signature"
  | "unknown_kid"
  | "unknown_issuer"
  | "wrong_audience"
  | "wrong_issuer"
  | "replayed"
  | "alg_not_allowed"
  | "missing_claim"
  | "missing_token"
  | "jwks_unavailable"
  // Client-certificate authentication (POST /v1/renew, /v1/revoke, GET /v1/certs/:serial);
  // "expired" and "not_yet_valid" above apply to the presented certificate too.
  | "missing_client_certificate"
  | "unknown_certificate"
  | "revoked";

export class CaError extends Error {
  readonly code: CaErrorCode;
  /**
   * Seconds after which the same request may succeed (`rate_limited`: until the bucket holds a
   * token again); api/http-errors.ts sends it as Retry-After (RFC 9110 §10.2.3).
   */
  readonly retryAfterSeconds: number | undefined;
  constructor(code: CaErrorCode, message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = "CaError";
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  static unauthorized(reason: TokenRejection, detail?: string): CaError {
    return new CaError("unauthorized", detail ? `${reason}: ${detail}` : reason);
  }
}

/**
 * An operator mistake (bad config, wrong passphrase, missing data dir): the CLI prints the
 * message on one line and exits non-zero, never a stack trace.
 */
export class OperatorError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "OperatorError";
  }
}

/**
 * The dataDir holds no CA. Most often the command read another config than the operator meant
 * (a relative dataDir resolves against the config file), so the CLI adds which config it used
 * and how to choose another (issue 16).
 */
export class NoCaError extends OperatorError {
  constructor(message: string) {
    super(`${message}: run "fleetca init" first`);
    this.name = "NoCaError";
  }
}
