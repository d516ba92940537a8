import express, { type Express } from "express";
import type { Logger } from "pino";
import { CaError } from "../core/errors.js";
import { Secret } from "../core/secret.js";
import { inspectCertificate } from "../registration/certificate-inspection.js";
import type { ClientAuthenticator } from "../registration/client-authentication.js";
import type { RegistrationAuthority } from "../registration/registration-authority.js";
import type { RenewalInfoService } from "../registration/renewal-info.js";
import type { RevokeService } from "../revocation/revoke-service.js";
import type { CertificateLookup } from "../storage/ports.js";
import type { CaMetrics } from "../metrics/ca-metrics.js";
import { timeRequests } from "../metrics/http-request-timer.js";
import { tokenRejectionOf } from "../metrics/token-outcome.js";
import { toPem } from "../x509/pem.js";
import { certificateRecordView } from "./certificate-record-view.js";
import { presentedCertificate } from "./client-certificate.js";
import { errorHandler, notFound } from "./http-errors.js";

/** SPEC.md: request bodies over 64 KiB get 413. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Tokens travel only in `Authorization: Bearer` (SPEC.md), never in a URL or body. */
function bearerToken(header: string | undefined): Secret {
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!m) throw CaError.unauthorized("missing_token", "send Authorization: Bearer <token>");
  return new Secret(m[1]!);
}

export interface ApiDeps {
  ra: RegistrationAuthority;
  /** Authenticates the mTLS client certificate for renew, revoke and record reads. */
  clients: ClientAuthenticator;
  revocations: RevokeService;
  certificates: Pick<CertificateLookup, "getCertificate">;
  /** GET /v1/renewal-info: the CA's suggested renewal window per certificate (RFC 9773). */
  renewalInfo: RenewalInfoService;
  log: Logger;
  /** The trusted roots, served as on the public listener so cert-agent can pin one (SPEC cert-agent). */
  roots?: () => Promise<Uint8Array[]>;
  /** Token outcomes and request durations (fleetca_token_verify_total, fleetca_http_request_duration_seconds). */
  metrics?: CaMetrics;
}

/**
 * The HTTPS API listener's routes: CSR submission by token; renewal, revocation and record reads
 * by client certificate (the listener requests one on every handshake, requires none).
 */
export function createApiApp(deps: ApiDeps): Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  // Parse every POST body as JSON whatever its Content-Type, so oversize and malformed bodies
  // are refused the same way (413 / 400) before any handler runs.
  const json = express.json({ limit: MAX_BODY_BYTES, type: () => true, strict: true });
  const metrics = deps.metrics;
  if (metrics) app.use(timeRequests(metrics));

  app.post("/v1/sign", json, async (req, res) => {
    let result;
    try {
      const token = bearerToken(req.get("authorization"));
      result = await deps.ra.sign({ token, body: req.body, idempotencyKey: req.get("idempotency-key"), client: req.socket.remoteAddress });
    } catch (err) {
      // Only the token's verdict is counted: a bad CSR or a busy store says nothing about it.
      const reason = tokenRejectionOf(err);
      if (reason) metrics?.tokenRefused(reason);
      throw err;
    }
    metrics?.tokenAccepted();
    res.status(201).type("application/json").send(JSON.stringify(result));
  });

  app.post("/v1/renew", json, async (req, res) => {
    const holder = await deps.clients.authenticate(presentedCertificate(req), "renew");
    const result = await deps.ra.renew(holder, req.body, req.socket.remoteAddress);
    res.status(201).type("application/json").send(JSON.stringify(result));
  });

  app.post("/v1/revoke", json, async (req, res) => {
    const caller = await deps.clients.authenticate(presentedCertificate(req));
    const r = await deps.revocations.revokeAsClient(caller, req.body);
    res.status(200).type("application/json").send(JSON.stringify({ serial: r.serial, revokedAt: r.revokedAt.toISOString() }));
  });

  app.get("/v1/certs/:serial", async (req, res) => {
    const caller = await deps.clients.authenticate(presentedCertificate(req));
    const record = await inspectCertificate(deps.certificates, caller, req.params.serial);
    res.status(200).type("application/json").send(JSON.stringify(certificateRecordView(record)));
  });

  // RFC 9773 §4.1: renewal information is public (a serial says nothing a CRL does not), so no
  // client certificate is asked for: a host whose certificate was revoked can still learn it must
  // replace it. Retry-After (§4.3) says when to ask again; a cache may keep the answer as long.
  app.get("/v1/renewal-info/:serial", async (req, res) => {
    const info = await deps.renewalInfo.renewalInfo(req.params.serial);
    res.set("Retry-After", String(info.retryAfterSeconds));
    res.set("Cache-Control", `public, max-age=${info.retryAfterSeconds}`);
    const body = {
      suggestedWindow: { start: info.suggestedWindow.start.toISOString(), end: info.suggestedWindow.end.toISOString() },
      ...(info.explanation !== undefined && { explanation: info.explanation }),
      status: info.status,
    };
    res.status(200).type("application/json").send(JSON.stringify(body));
  });

  // Same bundle as the public listener's /roots.pem: cert-agent fetches it over this listener's TLS
  // before trusting it, and accepts it only if a root matches its pinned --root-fingerprint.
  app.get("/roots.pem", async (_req, res) => {
    res.type("application/x-pem-file").send(((await deps.roots?.()) ?? []).map((d) => toPem(d, "CERTIFICATE")).join(""));
  });

  app.use(notFound);
  app.use(errorHandler(deps.log));
  return app;
}
