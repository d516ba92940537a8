import express, { type Express, type Router } from "express";
import type { Logger } from "pino";
import { toPem } from "../x509/pem.js";
import { errorHandler, notFound } from "./http-errors.js";

export interface PublicSources {
  /** Every trusted root (two during a root rotation). */
  roots(): Uint8Array[];
  /** The current issuing intermediate. */
  intermediate(): Uint8Array;
  /** True when the database and the signer both answer. */
  healthy(): Promise<boolean>;
}

/** The plain-HTTP listener relying parties use (RFC 5280 §4.2.1.13 / RFC 6960 practice). */
export function createPublicApp(src: PublicSources, log: Logger, routers: Router[] = []): Express {
  const app = express();
  app.disable("x-powered-by");
  // Revocation publishers (CRL, OCSP) bring their own routes.
  for (const r of routers) app.use(r);

  app.get("/roots.pem", (_req, res) => {
    res.type("application/x-pem-file").send(src.roots().map((d) => toPem(d, "CERTIFICATE")).join(""));
  });

  app.get("/intermediate.crt", (_req, res) => {
    res.type("application/pkix-cert").send(Buffer.from(src.intermediate()));
  });

  app.get("/healthz", async (_req, res) => {
    const ok = await src.healthy().catch(() => false);
    res.status(ok ? 200 : 503).json(ok ? { status: "ok" } : { status: "unavailable" });
  });

  app.use(notFound);
  app.use(errorHandler(log));
  return app;
}
