import { Router, type Response } from "express";
import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import type { PublishedCrl } from "../revocation/crl/crl-publisher.js";

/** What the CRL routes read: signed-ahead CRLs in memory (DESIGN habit 8). */
export interface CrlSource {
  currentCrl(): PublishedCrl;
  /** Undefined when no issuer has this key id. */
  crlFor(keyIdHex: string): PublishedCrl | undefined;
}

/**
 * GET /crl (the current intermediate's) and GET /crl/<issuer-key-id-hex>, the URL every leaf's
 * CRL distribution point names (RFC 5280 §4.2.1.13). DER, `application/pkix-crl` (RFC 2585 §4.2).
 */
export function createCrlRouter(source: CrlSource, clock: Clock, opts: { intervalMs: number }): Router {
  const router = Router();

  router.get("/crl", (_req, res) => sendCrl(res, source.currentCrl(), clock, opts.intervalMs));

  router.get("/crl/:keyId", (req, res) => {
    const keyId = req.params.keyId.toLowerCase();
    const crl = /^[0-9a-f]{2,128}$/.test(keyId) ? source.crlFor(keyId) : undefined;
    if (!crl) throw new CaError("not_found", `no issuer with key id ${req.params.keyId.slice(0, 130)}`);
    sendCrl(res, crl, clock, opts.intervalMs);
  });

  return router;
}

/**
 * Caches may keep a CRL until its nextUpdate, but no longer than the interval: a fresher one
 * (with any revocation of the last interval) is published by then. The ETag is the CRL number,
 * which names the content exactly; express answers a matching If-None-Match with 304.
 */
function sendCrl(res: Response, crl: PublishedCrl, clock: Clock, intervalMs: number): void {
  const untilNext = Math.floor((crl.nextUpdate.getTime() - clock.now().getTime()) / 1000);
  const maxAge = Math.max(0, Math.min(untilNext, Math.floor(intervalMs / 1000)));
  res
    .set("Cache-Control", `public, max-age=${maxAge}`)
    .set("Last-Modified", crl.thisUpdate.toUTCString())
    .set("ETag", `"${crl.crlNumber}"`)
    .type("application/pkix-crl")
    .send(Buffer.from(crl.der));
}
