import type { ErrorRequestHandler, RequestHandler, Response } from "express";
import type { Logger } from "pino";
import { CaError, type CaErrorCode } from "../core/errors.js";

/** The one place a CaError code becomes an HTTP status (DESIGN habit 5, SPEC.md "HTTP API"). */
const STATUS: Record<CaErrorCode, number> = {
  bad_request: 400,
  bad_csr: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
};

export function sendError(res: Response, code: CaErrorCode, message: string): void {
  res.status(STATUS[code]).type("application/json").send(JSON.stringify({ error: code, message }));
}

export const notFound: RequestHandler = (req, res) => sendError(res, "not_found", `no route for ${req.method} ${req.path.slice(0, 100)}`);

/** body-parser failures carry `type`; each is the client's mistake, never a 500. */
const BODY_ERRORS: Record<string, [CaErrorCode, string]> = {
  "entity.too.large": ["too_large", "request body exceeds 64 KiB"],
  "entity.parse.failed": ["bad_request", "request body is not valid JSON"],
  "encoding.unsupported": ["bad_request", "unsupported content encoding"],
  "charset.unsupported": ["bad_request", "unsupported charset"],
  "request.aborted": ["bad_request", "request aborted"],
  "request.size.invalid": ["bad_request", "request size did not match Content-Length"],
  "stream.encoding.set": ["bad_request", "invalid request stream"],
};

/**
 * Maps any thrown value to the SPEC error shape. A CaError's own message is safe to show (it is
 * written for the client); anything else is a bug: logged with its stack, answered with a bare 500.
 */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) return;
    if (err instanceof CaError) {
      if (err.code === "internal") log.error({ err, path: req.path }, "internal error");
      // A store that cannot commit is the operator's concern: say why (SQLITE_BUSY, disk full), at warn.
      else if (err.code === "unavailable" && err.cause instanceof Error) {
        log.warn({ code: err.code, reason: err.message, cause: err.cause.message, causeCode: (err.cause as { code?: unknown }).code, path: req.path }, "request refused");
      } else log.info({ code: err.code, reason: err.message, path: req.path }, "request refused");
      // SPEC: 503 and 429 always carry Retry-After (a 429 says when its bucket has a token again).
      if (err.retryAfterSeconds !== undefined) res.set("Retry-After", String(Math.max(1, Math.ceil(err.retryAfterSeconds))));
      else if (err.code === "unavailable") res.set("Retry-After", "5");
      return sendError(res, err.code, err.code === "internal" ? "internal error" : err.message);
    }
    const type = (err as { type?: unknown }).type;
    if (typeof type === "string" && BODY_ERRORS[type]) {
      const [code, message] = BODY_ERRORS[type]!;
      log.info({ code, reason: message, path: req.path }, "request refused");
      return sendError(res, code, message);
    }
    // body-parser reports some client faults (e.g. a Content-Encoding whose body does not
    // decompress) as plain http-errors with a 4xx status and no `type`: still the client's mistake.
    const status = (err as { status?: unknown }).status;
    if (typeof status === "number" && status >= 400 && status < 500) {
      const code: CaErrorCode = status === 413 ? "too_large" : "bad_request";
      const message = status === 413 ? "request body exceeds 64 KiB" : "request body could not be read";
      log.info({ code, reason: (err as Error).message, path: req.path }, "request refused");
      return sendError(res, code, message);
    }
    log.error({ err, path: req.path }, "unhandled error");
    return sendError(res, "internal", "internal error");
  };
}
