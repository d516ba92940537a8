import type { Request } from "express";
import type { TLSSocket } from "node:tls";

/**
 * The DER of the certificate the TLS client presented on this request's connection, or null.
 * The API listener requests but does not require one (POST /v1/sign callers have none yet), and
 * does not let node judge it: the handshake's CertificateVerify (RFC 8446 §4.4.3, RFC 5246
 * §7.4.8) already proved the client holds the key; whether the certificate is one of ours,
 * unrevoked and unexpired is registration/client-authentication.ts's decision.
 */
export function presentedCertificate(req: Request): Uint8Array | null {
  const socket = req.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== "function") return null;
  // getPeerCertificate() answers {} (no raw) when the client sent no certificate.
  const raw = socket.getPeerCertificate(false).raw as Buffer | undefined;
  return raw && raw.length > 0 ? new Uint8Array(raw) : null;
}
