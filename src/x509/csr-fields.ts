import type { Sans } from "../core/sans.js";

/** The SANs of one subjectAltName extension in a CSR's extensionRequest, and how many were not DNS/IP/URI. */
export interface SanGroup {
  sans: Sans;
  other: number;
}

/**
 * What verifying a PKCS#10 request (RFC 2986 §4) needs from it, whichever decoder produced it:
 * the DER walk (csr-walk.ts, the hot path) or the ASN.1 object model (csr-object-model.ts, the
 * rare path and the cross-check). Both hand these to the same checks in csr.ts, so they accept,
 * refuse and word their refusals alike.
 */
export interface CsrFields {
  /** The exact certificationRequestInfo octets the self-signature covers (RFC 2986 §4.2). */
  info: Uint8Array;
  /** DER SubjectPublicKeyInfo. */
  spki: Uint8Array;
  signatureAlgorithm: string;
  /** The signature BIT STRING's octets (no unused-bits octet). */
  signature: Uint8Array;
  /** The first CN of the subject (X.520 commonName), or null when it has none. */
  commonName: string | null;
  /**
   * One group per subjectAltName extension, in order. Iterated only after the signature has
   * verified; the object model decodes each lazily, so its "malformed" refusals come in the same
   * order as they always did.
   */
  sanGroups: Iterable<SanGroup>;
}
