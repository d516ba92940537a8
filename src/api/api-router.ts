import express, { type Express } from "express";
import type { Logger } from "pino";
import { CaError } from "../core/errors.js";
import { Secret } from "../core/secret.js";
import type { RegistrationAuthority } from "../registration/registration-authority.js";
import { errorHandler, notFound } from "./http-errors.js";

/** SPEC.md: request bodies over 64 KiB get 413. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Tokens travel only in `Authorization: Bearer` (SPEC.md), never in a URL or body. */
function bearerToken(header: string | undefined): Secret {
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!m) throw CaError.unauthorized("missing_token", "send Authorization: Bearer <token>");
  return new Secret(m[1]!);
}

/** The HTTPS API listener's routes: CSR submission now; renew and revoke hang here later. */
export function createApiApp(deps: { ra: RegistrationAuthority; log: Logger }): Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  // Parse every POST body as JSON whatever its Content-Type, so oversize and malformed bodies
  // are refused the same way (413 / 400) before any handler runs.
  const json = express.json({ limit: MAX_BODY_BYTES, type: () => true, strict: true });

  app.post("/v1/sign", json, async (req, res) => {
    const token = bearerToken(req.get("authorization"));
    const result = await deps.ra.sign({ token, body: req.body, idempotencyKey: req.get("idempotency-key") });
    res.status(201).type("application/json").send(JSON.stringify(result));
  });

  app.use(notFound);
  app.use(errorHandler(deps.log));
  return app;
}
