import express, { type Request, type Response, type Router } from "express";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { OcspAnswer, OcspResponder } from "../revocation/ocsp/ocsp-responder.js";
import { ocspFailure } from "../revocation/ocsp/ocsp-response.js";
import { MAX_BODY_BYTES } from "./api-router.js";

const OCSP_RESPONSE_TYPE = "application/ocsp-response";
const GET_PREFIX = "/ocsp/";

/**
 * RFC 6960 Appendix A over plain HTTP: `POST /ocsp` with an application/ocsp-request body and
 * `GET /ocsp/{url-encoded base64 DER}`. Every answer on these routes is an OCSPResponse, even a
 * refusal (malformedRequest, unauthorized, internalError as its responseStatus, RFC 6960 §4.2.1):
 * OCSP clients read the body, not a JSON error. The only HTTP-level refusal is 413 for a body
 * over 64 KiB (SPEC), and even that carries a malformedRequest body.
 */
export function createOcspRouter(responder: OcspResponder, clock: Clock, log: Logger): Router {
  const router = express.Router();
  // Raw bytes for this route only; the type is not checked because some clients omit it.
  const readBody = express.raw({ type: () => true, limit: MAX_BODY_BYTES });

  router.post("/ocsp", (req, res) => {
    readBody(req, res, (err?: unknown) => {
      if (err) {
        const tooLarge = (err as { type?: unknown; status?: unknown }).type === "entity.too.large" || (err as { status?: unknown }).status === 413;
        log.info({ reason: tooLarge ? "body over 64 KiB" : "unreadable body", path: req.path }, "OCSP request refused");
        return sendFailure(res, tooLarge ? 413 : 200);
      }
      const body: unknown = req.body;
      const der = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
      void answer(res, () => responder.respond(der), false);
    });
  });

  // A plain middleware rather than a route parameter: the router would percent-decode a parameter
  // itself and answer a bad escape with its own (JSON) error.
  router.use((req, res, next) => {
    if ((req.method !== "GET" && req.method !== "HEAD") || !(req.path === "/ocsp" || req.path.startsWith(GET_PREFIX))) return next();
    const der = decodeGetRequest(req.path.slice(GET_PREFIX.length));
    if (!der) return sendFailure(res, 200);
    void answer(res, () => responder.respond(der), true, req);
  });

  async function answer(res: Response, produce: () => Promise<OcspAnswer>, cacheable: boolean, req?: Request): Promise<void> {
    let a: OcspAnswer;
    try {
      a = await produce();
    } catch (err) {
      // respond() does not throw; this is a bug, still answered in the protocol's terms.
      log.error({ err }, "OCSP responder failed");
      return sendFailure(res, 200, "internalError");
    }
    res.status(200).set("Content-Type", OCSP_RESPONSE_TYPE);
    if (cacheable && a.freshness) {
      // RFC 5019 §6.2: let HTTP caches keep a GET answer exactly until nextUpdate.
      const { thisUpdate, nextUpdate, etag } = a.freshness;
      const maxAge = Math.max(0, Math.floor((nextUpdate.getTime() - clock.now().getTime()) / 1000));
      res.set({
        "Cache-Control": `public, max-age=${maxAge}, no-transform, must-revalidate`,
        "Last-Modified": thisUpdate.toUTCString(),
        Expires: nextUpdate.toUTCString(),
        ETag: etag,
      });
      if (req?.fresh) {
        res.status(304).end();
        return;
      }
    } else {
      // A nonce answer belongs to one request; a failure may be transient: neither is to be kept.
      res.set("Cache-Control", "no-store");
    }
    res.set("Content-Length", String(a.der.length)).end(Buffer.from(a.der));
  }

  return router;
}

function sendFailure(res: Response, httpStatus: number, status: "malformedRequest" | "internalError" = "malformedRequest"): void {
  const der = ocspFailure(status);
  res
    .status(httpStatus)
    .set({ "Content-Type": OCSP_RESPONSE_TYPE, "Cache-Control": "no-store", "Content-Length": String(der.length) })
    .end(Buffer.from(der));
}

/**
 * RFC 6960 Appendix A.1: the path segment is the URL-encoding of the base64 of the DER. Clients
 * differ: some percent-encode "+", "/" and "=", some don't, some use the URL-safe alphabet
 * (RFC 4648 §5) or drop the padding; a proxy may turn "+" into a space. All of them are read here.
 */
export function decodeGetRequest(segment: string): Uint8Array | null {
  let text: string;
  try {
    text = decodeURIComponent(segment);
  } catch {
    return null;
  }
  text = text.replace(/ /g, "+").replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  if (text.length === 0 || text.length % 4 === 1 || !/^[A-Za-z0-9+/]+$/.test(text)) return null;
  return Buffer.from(text, "base64");
}
