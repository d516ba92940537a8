import { createHash, X509Certificate } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
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
  /**
   * The DER of the root the operator pinned (--root-fingerprint), kept even after a refreshed
   * bundle no longer carries it: every later refresh is judged against this root's key, so the
   * pin never moves on its own (see acceptRefreshedRoots). Absent only in anchors made by hand;
   * then the pinned root is looked for in `ders`.
   */
  pinnedRoot?: Buffer;
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
  return { pem: ders.map((d) => toPem(d, "CERTIFICATE")).join(""), ders, pinnedRoot: ders[seen.indexOf(fingerprint)]! };
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

function subjectDer(c: X509Certificate): Buffer {
  // node:crypto gives the subject only as text; the DER comparison RFC 5280 §7.1 asks for needs
  // the encoded Name, so take it from the parsed certificate.
  return Buffer.from(AsnConvert.serialize(AsnConvert.parse(c.raw, Certificate).tbsCertificate.subject));
}

function spkiDer(c: X509Certificate): Buffer {
  return c.publicKey.export({ type: "spki", format: "der" });
}

/** Self-issued and self-signed (RFC 5280 §3.2): a root, as a trust anchor is distributed. */
function isSelfSigned(c: X509Certificate): boolean {
  return c.checkIssued(c) && c.verify(c.publicKey);
}

function withinValidity(c: X509Certificate, now: Date): boolean {
  const v = AsnConvert.parse(c.raw, Certificate).tbsCertificate.validity;
  return now.getTime() >= v.notBefore.getTime().getTime() && now.getTime() <= v.notAfter.getTime().getTime();
}

/**
 * The roots in `bundle` that the pinned root vouches for through a cross certificate: a CA
 * certificate in the bundle, issued and signed by the pinned root (RFC 5280 §6.1.3 (a)(1),(4):
 * signature and issuer name), currently valid (§6.1.3 (a)(2)), whose subject and public key are
 * exactly those of a self-signed root in the bundle. That is what `fleetca rotate root` publishes:
 * the new root, plus the same name and key certified by the old one, so a path new-leaf →
 * new-intermediate → cross cert → old root exists while hosts still pin the old root.
 */
function crossSignedRoots(certs: X509Certificate[], pinned: X509Certificate, now: Date): X509Certificate[] {
  const roots = certs.filter(isSelfSigned);
  const vouched: X509Certificate[] = [];
  for (const cross of certs) {
    if (isSelfSigned(cross) || !cross.ca) continue;
    if (!cross.checkIssued(pinned) || !cross.verify(pinned.publicKey) || !withinValidity(cross, now)) continue;
    const subject = subjectDer(cross);
    const spki = spkiDer(cross);
    for (const r of roots) {
      if (subjectDer(r).equals(subject) && spkiDer(r).equals(spki) && !vouched.includes(r)) vouched.push(r);
    }
  }
  return vouched;
}

/**
 * Judges a roots bundle fetched again (over TLS verified against the current anchors, see
 * refreshTrust). Returns null when it holds the same certificates as `current` (order aside),
 * the new anchors when it still holds the pinned root or a root cross-signed by the pinned root,
 * and throws otherwise. This is how a root rotation (`fleetca rotate root`: the new root, cross-
 * signed by the old, served beside it until `retire root`) reaches hosts before leaves switch.
 *
 * The pin does not move. After a cross-signed root is accepted, the anchors become the new bundle
 * but `pinnedRoot` stays the root the operator pinned, and the next refresh is again judged against
 * it. If each accepted root became the new pin, one compromised CA key (or one bundle accepted in
 * error) could walk the pin, rotation after rotation, to roots the operator never approved; kept
 * fixed, every root the agent trusts is one cross certificate away from the operator's
 * fingerprint. Consequence: once the old root is retired and no cross certificate is served any
 * more, refreshes are refused and the operator re-pins (--root-fingerprint of the new root), as
 * they would for a fresh bootstrap against that CA. The old root's DER is kept even when the
 * bundle drops it, because the cross certificate can only be checked with its key.
 *
 * Anchors accepted this way hold the whole bundle, as bootstrap's do (acceptRoots): it came from
 * the CA over a connection authenticated by roots already trusted, and one vouched-for member is
 * what makes the rest the CA's word.
 */
export function acceptRefreshedRoots(bundlePem: string, current: TrustAnchors, pinnedFingerprint: string, now: Date = new Date()): TrustAnchors | null {
  const ders = allPem(bundlePem, "CERTIFICATE");
  if (ders.length === 0) throw new AgentError("the CA's /roots.pem held no certificates");
  const fps = ders.map(sha256Hex);
  const had = new Set(current.ders.map(sha256Hex));
  const got = new Set(fps);
  if (got.size === had.size && [...got].every((f) => had.has(f))) return null;

  const pem = ders.map((d) => toPem(d, "CERTIFICATE")).join("");
  const i = fps.indexOf(pinnedFingerprint);
  if (i >= 0) return { pem, ders, pinnedRoot: ders[i]! };

  const pinnedDer = current.pinnedRoot ?? current.ders.find((d) => sha256Hex(d) === pinnedFingerprint);
  if (!pinnedDer || sha256Hex(pinnedDer) !== pinnedFingerprint) {
    throw new AgentError(`the current trust anchors do not hold the pinned root ${pinnedFingerprint}; cannot judge the CA's new roots`);
  }
  const next: TrustAnchors = { pem, ders, pinnedRoot: pinnedDer };

  let certs: X509Certificate[];
  try {
    certs = ders.map((d) => new X509Certificate(d));
  } catch {
    throw new AgentError("the CA's /roots.pem holds something that is not a certificate");
  }
  if (crossSignedRoots(certs, new X509Certificate(pinnedDer), now).length > 0) return next;
  throw new AgentError(
    `refusing the CA's new roots: none is the pinned root or cross-signed by it (roots.pem has SHA-256 ${fps.join(", ")}; pinned ${pinnedFingerprint})`,
  );
}

/**
 * GET {ca}/roots.pem again, this time over TLS verified against the CURRENT anchors (the CA's API
 * certificate chains to a root already trusted), and judges the answer with acceptRefreshedRoots.
 * Null when nothing changed. The caller keeps its current anchors when this throws: a refused
 * bundle changes nothing.
 */
export async function refreshTrust(
  caUrl: string,
  current: TrustAnchors,
  pinnedFingerprint: string,
  timeoutMs = 10_000,
  now: Date = new Date(),
): Promise<TrustAnchors | null> {
  const r = await httpsRequest(`${caUrl}/roots.pem`, { method: "GET", ca: current.pem, timeoutMs });
  if (r.status !== 200) throw new AgentError(`GET ${caUrl}/roots.pem answered HTTP ${r.status}`);
  return acceptRefreshedRoots(r.body.toString("utf8"), current, pinnedFingerprint, now);
}
