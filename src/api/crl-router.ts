import { Router, type Response } from "express";
import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import type { PublishedCrl } from "../revocation/crl/crl-publisher.js";
/** DER octets per write of /crls.pem: a multiple of 48, so every slice ends on a whole 64-character line. */
const PEM_SLICE = 48 * 1024;

/** What the CRL routes read: signed-ahead CRLs in memory (DESIGN habit 8). */
export interface CrlSource {
  currentCrl(): PublishedCrl | undefined;
  knows(keyIdHex: string, shard: number | null): boolean;
  /** Undefined when the scope is unknown or has no CRL yet. */
  crlFor(keyIdHex: string, shard: number | null): PublishedCrl | undefined;
  all(): PublishedCrl[];
}

/**
 * GET /crl (the current intermediate's full CRL), /crl/<issuer-key-id-hex> (any issuer's, roots
 * included: the URL every certificate's CRL distribution point names, RFC 5280 §4.2.1.13),
 * /crl/<issuer-key-id-hex>/<shard> (one partition), all DER `application/pkix-crl` (RFC 2585
 * §4.2); and /crls.pem, every current CRL as one PEM bundle, the shape nginx's `ssl_crl` and
 * HAProxy's `crl-file` take.
 */
export function createCrlRouter(source: CrlSource, clock: Clock, opts: { intervalMs: number }): Router {
  const router = Router();

  router.get("/crl", (_req, res) => sendCrl(res, published(source.currentCrl(), "the current intermediate"), clock, opts.intervalMs));

  router.get(["/crl/:keyId", "/crl/:keyId/:shard"], (req, res) => {
    const keyId = String(req.params.keyId).toLowerCase();
    const shardText = req.params.shard as string | undefined;
    const shard = shardText === undefined ? null : /^(0|[1-9]\d{0,5})$/.test(shardText) ? Number(shardText) : -1;
    const name = `${String(req.params.keyId).slice(0, 130)}${shardText === undefined ? "" : `/${shardText.slice(0, 10)}`}`;
    if (!/^[0-9a-f]{2,128}$/.test(keyId) || shard === -1 || !source.knows(keyId, shard)) throw new CaError("not_found", `no CRL ${name}`);
    sendCrl(res, published(source.crlFor(keyId, shard), name), clock, opts.intervalMs);
  });

  router.get("/crls.pem", (_req, res) => {
    const crls = source.all();
    res.set("Cache-Control", "no-cache").type("application/x-pem-file");
    // Streamed, 48 KiB of DER (64 KiB of base64 lines) at a time: a bundle with a million-entry
    // CRL is ~55 MB of PEM, which must not become one string per request.
    let i = 0;
    let offset = 0;
    const pump = (): void => {
      while (i < crls.length) {
        if (res.destroyed) return; // the client went away
        const der = crls[i]!.der;
        if (offset === 0) res.write("-----BEGIN X509 CRL-----\n");
        const end = Math.min(offset + PEM_SLICE, der.length);
        const lines = Buffer.from(der.buffer, der.byteOffset + offset, end - offset).toString("base64").replace(/.{64}/g, "$&\n");
        offset = end;
        const last = offset === der.length;
        const more = res.write(last ? `${lines.endsWith("\n") ? lines : `${lines}\n`}-----END X509 CRL-----\n` : lines);
        if (last) {
          i++;
          offset = 0;
        }
        if (!more) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  });

  return router;
}

function published(crl: PublishedCrl | undefined, name: string): PublishedCrl {
  // Only a scope whose first CRL could not be signed has none: /healthz says why.
  if (!crl) throw new CaError("unavailable", `no CRL published yet for ${name}`);
  return crl;
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
    .send(Buffer.from(crl.der.buffer, crl.der.byteOffset, crl.der.byteLength));
}
