import express, { type Express, type RequestHandler, type Router } from "express";
import type { Logger } from "pino";
import { toPem } from "../x509/pem.js";
import { errorHandler, notFound } from "./http-errors.js";
import { CaError } from "../core/errors.js";
import type { TreeHeadJson } from "../audit/tree-head.js";

export interface PublicSources {
  /** Every trusted root (two during a root rotation), and the cross certificates between them. */
  roots(): Promise<Uint8Array[]>;
  /** The current issuing intermediate. */
  intermediate(): Uint8Array;
  /**
   * What stops the CA from doing its job (database, signer, CRL publication): any error makes
   * /healthz answer 503 so a load balancer or monitor sees it; warnings ride along with a 200.
   */
  health(): Promise<{ errors: string[]; warnings: string[] }>;
  /** The issuance log's latest signed tree head, or null before the first one. */
  auditTreeHead(): Promise<TreeHeadJson | null>;
}

/** The plain-HTTP listener relying parties use (RFC 5280 §4.2.1.13 / RFC 6960 practice). */
export function createPublicApp(src: PublicSources, log: Logger, routers: Router[] = [], before: RequestHandler[] = []): Express {
  const app = express();
  app.disable("x-powered-by");
  // Whatever watches every request (metrics' request timer) runs first.
  for (const h of before) app.use(h);
  // Revocation publishers (CRL, OCSP) bring their own routes.
  for (const r of routers) app.use(r);

  app.get("/roots.pem", async (_req, res) => {
    res.type("application/x-pem-file").send((await src.roots()).map((d) => toPem(d, "CERTIFICATE")).join(""));
  });

  app.get("/intermediate.crt", (_req, res) => {
    res.type("application/pkix-cert").send(Buffer.from(src.intermediate()));
  });

  // RFC 9162 §4.3 (get-sth) in spirit: a monitor polls this and checks each head is consistent
  // with the one before (`fleetca audit consistency`), without reading the log.
  app.get("/v1/audit/tree-head", async (_req, res) => {
    const head = await src.auditTreeHead();
    if (!head) throw new CaError("not_found", "the issuance log has no signed tree head yet");
    res.set("Cache-Control", "no-cache");
    res.type("application/json").send(JSON.stringify(head));
  });

  app.get("/healthz", async (_req, res) => {
    const h = await src.health().catch((err: unknown) => {
      log.error({ err }, "health check failed");
      return { errors: ["health check failed"], warnings: [] };
    });
    res.set("Cache-Control", "no-store");
    if (h.errors.length > 0) {
      res.status(503).json({ status: "unavailable", reasons: h.errors, ...(h.warnings.length > 0 && { warnings: h.warnings }) });
    } else {
      res.status(200).json({ status: "ok", ...(h.warnings.length > 0 && { warnings: h.warnings }) });
    }
  });

  app.use(notFound);
  app.use(errorHandler(log));
  return app;
}
