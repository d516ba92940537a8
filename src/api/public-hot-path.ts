import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { OcspAnswer, OcspResponder } from "../revocation/ocsp/ocsp-responder.js";
import { ocspFailure, type OcspFailure } from "../revocation/ocsp/ocsp-response.js";
import { getPathKey } from "../revocation/ocsp/exact-request-map.js";
import type { OcspAnswerCounter } from "../metrics/ocsp-answer-counter.js";
import { MAX_BODY_BYTES } from "./api-router.js";

const OCSP_RESPONSE_TYPE = "application/ocsp-response";

/** A request handler that takes the requests it serves and returns false for the others. */
export type HotPath = (req: IncomingMessage, res: ServerResponse) => boolean;

/**
 * RFC 6960 Appendix A over plain HTTP, straight on node:http: `POST /ocsp` with an
 * application/ocsp-request body and `GET /ocsp/{url-encoded base64 DER}`. The public server calls
 * this first and hands everything else to the express app; OCSP is the hot route, and express's
 * per-request work (router walk, req/res decoration) cost more than the answer itself.
 *
 * Every answer on these routes is an OCSPResponse, even a refusal (malformedRequest,
 * unauthorized, internalError as its responseStatus, RFC 6960 §4.2.1): OCSP clients read the
 * body, not a JSON error. The only HTTP-level refusal is 413 for a body over 64 KiB (SPEC), and
 * even that carries a malformedRequest body. GET answers carry RFC 5019 §6.2 caching headers.
 */
export function createOcspHotPath(responder: OcspResponder, clock: Clock, log: Logger, answers?: OcspAnswerCounter): HotPath {
  return (req, res) => {
    const url = req.url ?? "";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (req.method === "POST" && (path === "/ocsp" || path === "/ocsp/")) {
      readBody(req, res);
      return true;
    }
    if ((req.method === "GET" || req.method === "HEAD") && (path === "/ocsp" || path.startsWith("/ocsp/"))) {
      const segment = path.slice("/ocsp/".length);
      const alias = getPathKey(segment);
      const remembered = responder.answerFromMemory(alias);
      if (remembered) {
        send(req, res, remembered, true);
        return true;
      }
      const der = decodeGetRequest(segment);
      if (!der) refuse(res, 200);
      else answer(req, res, der, true, alias);
      return true;
    }
    return false;
  };

  function readBody(req: IncomingMessage, res: ServerResponse): void {
    const declared = Number(req.headers["content-length"]);
    if (declared > MAX_BODY_BYTES) return tooLarge(req, res);
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (c: Buffer) => {
      if (refused) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        refused = true;
        tooLarge(req, res);
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (refused) return;
      answer(req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), false);
    });
    req.on("error", () => {
      if (refused || res.headersSent) return;
      refused = true;
      log.info({ reason: "unreadable body", path: req.url }, "OCSP request refused");
      refuse(res, 200);
    });
  }

  function tooLarge(req: IncomingMessage, res: ServerResponse): void {
    log.info({ reason: "body over 64 KiB", path: req.url }, "OCSP request refused");
    // The rest of the body is not read: close the connection after the answer instead.
    res.shouldKeepAlive = false;
    refuse(res, 413);
  }

  function refuse(res: ServerResponse, httpStatus: number): void {
    answers?.refused("malformedRequest");
    sendFailure(res, httpStatus, "malformedRequest");
  }

  function answer(req: IncomingMessage, res: ServerResponse, der: Uint8Array, cacheable: boolean, alias?: string): void {
    const now = responder.answerFromMemory(der);
    if (now) return send(req, res, now, cacheable);
    responder.respond(der, req.socket.remoteAddress ?? "unknown", alias).then(
      (a) => send(req, res, a, cacheable),
      (err: unknown) => {
        // respond() does not throw; this is a bug, still answered in the protocol's terms.
        log.error({ err }, "OCSP responder failed");
        answers?.refused("internalError");
        sendFailure(res, 200, "internalError");
      },
    );
  }

  function send(req: IncomingMessage, res: ServerResponse, a: OcspAnswer, cacheable: boolean): void {
    if (res.destroyed) return;
    answers?.count(a);
    if (cacheable && a.freshness) {
      // RFC 5019 §6.2: let HTTP caches keep a GET answer exactly until nextUpdate.
      const { thisUpdate, nextUpdate, etag } = a.freshness;
      const maxAge = Math.max(0, Math.floor((nextUpdate.getTime() - clock.now().getTime()) / 1000));
      const headers = {
        "Content-Type": OCSP_RESPONSE_TYPE,
        "Cache-Control": `public, max-age=${maxAge}, no-transform, must-revalidate`,
        "Last-Modified": thisUpdate.toUTCString(),
        Expires: nextUpdate.toUTCString(),
        ETag: etag,
      };
      if (notModified(req, etag, thisUpdate)) {
        res.writeHead(304, headers).end();
        return;
      }
      res.writeHead(200, { ...headers, "Content-Length": a.der.length }).end(a.der);
      return;
    }
    // A nonce answer belongs to one request; a failure may be transient; POST answers are not
    // for HTTP caches (RFC 5019 §5): none is to be kept.
    res.writeHead(200, { "Content-Type": OCSP_RESPONSE_TYPE, "Cache-Control": "no-store", "Content-Length": a.der.length }).end(a.der);
  }
}

function sendFailure(res: ServerResponse, httpStatus: number, status: OcspFailure): void {
  const der = ocspFailure(status);
  res.writeHead(httpStatus, { "Content-Type": OCSP_RESPONSE_TYPE, "Cache-Control": "no-store", "Content-Length": der.length }).end(der);
}

/**
 * A conditional GET (RFC 9110 §13.1) an HTTP cache makes to revalidate: If-None-Match wins over
 * If-Modified-Since; a request that says Cache-Control: no-cache wants the full answer.
 */
function notModified(req: IncomingMessage, etag: string, lastModified: Date): boolean {
  const inm = req.headers["if-none-match"];
  const ims = req.headers["if-modified-since"];
  if (!inm && !ims) return false;
  if (/(?:^|,)\s*no-cache\s*(?:,|$)/.test(req.headers["cache-control"] ?? "")) return false;
  if (inm) {
    // Weak comparison (RFC 9110 §8.8.3.2): W/ prefixes do not matter.
    return inm.trim() === "*" || inm.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
  }
  const since = Date.parse(ims!);
  return !Number.isNaN(since) && lastModified.getTime() <= since;
}

/**
 * RFC 6960 Appendix A.1: the path segment is the URL-encoding of the base64 of the DER. Clients
 * differ: some percent-encode "+", "/" and "=", some don't, some use the URL-safe alphabet
 * (RFC 4648 §5) or drop the padding; a proxy may turn "+" into a space. All of them are read here.
 */
export function decodeGetRequest(segment: string): Uint8Array | null {
  let text = segment;
  if (text.includes("%")) {
    try {
      text = decodeURIComponent(text);
    } catch {
      return null;
    }
  }
  text = text.replace(/ /g, "+").replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  if (text.length === 0 || text.length % 4 === 1 || !/^[A-Za-z0-9+/]+$/.test(text)) return null;
  return Buffer.from(text, "base64");
}
