import { createHash } from "node:crypto";
import { allPem, toPem } from "../x509/pem.js";
import { AgentError } from "./errors.js";
import { httpsRequest } from "./ca-client.js";

/**
 * Normalises a root fingerprint: SHA-256 of the root's DER, 64 hex digits, case-insensitive,
 * colons allowed (the `openssl x509 -fingerprint -sha256` form). Anything else is an operator
 * mistake, reported before any network traffic.
 */
export function parseFingerprint(text: string): string {
  const hex = text.trim().replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new AgentError("--root-fingerprint must be a SHA-256 fingerprint: 64 hex digits, colons allowed");
  }
  return hex;
}

export function sha256Hex(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

/** The roots the agent trusts from now on: exactly the bundle whose pinned member matched. */
export interface TrustAnchors {
  /** PEM bundle, used as the only `ca` for every later TLS connection and written as ca.pem. */
  pem: string;
  ders: Buffer[];
}

/**
 * Accepts a roots bundle only if one root's SHA-256 equals the pin. This is trust-on-first-use
 * made safe by an out-of-band fingerprint (the pattern of `step ca bootstrap`): the bundle was
 * fetched over an unauthenticated channel, so nothing in it counts until the pin matches.
 */
export function acceptRoots(bundle: string, fingerprint: string): TrustAnchors {
  const ders = allPem(bundle, "CERTIFICATE");
  if (ders.length === 0) throw new AgentError("the CA's /roots.pem held no certificates");
  const seen = ders.map(sha256Hex);
  if (!seen.includes(fingerprint)) {
    throw new AgentError(
      `root fingerprint mismatch: the CA's roots have SHA-256 ${seen.join(", ")}, not the pinned --root-fingerprint ${fingerprint}; refusing to trust it`,
    );
  }
  return { pem: ders.map((d) => toPem(d, "CERTIFICATE")).join(""), ders };
}

/**
 * GET {ca}/roots.pem over TLS WITHOUT verifying the server (there is nothing to verify against
 * yet), then pins. Every later request uses the returned anchors and full verification.
 */
export async function bootstrapTrust(caUrl: string, fingerprint: string, timeoutMs = 10_000): Promise<TrustAnchors> {
  const r = await httpsRequest(`${caUrl}/roots.pem`, { method: "GET", insecure: true, timeoutMs });
  if (r.status !== 200) throw new AgentError(`GET ${caUrl}/roots.pem answered HTTP ${r.status}`);
  return acceptRoots(r.body.toString("utf8"), fingerprint);
}
