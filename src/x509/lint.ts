import { KeyUsageFlags } from "@peculiar/asn1-x509";
import { isDnsName, isUriSan, sanCount, sansSubset, type Sans } from "../core/sans.js";
import type { CertificateInfo } from "./certificate-info.js";
import { OID } from "./oids.js";

/** What the issuer allows a leaf to be; the lint checks the TBS against it before anything signs. */
export interface LeafLintContext {
  issuerNotBefore: Date;
  issuerNotAfter: Date;
  issuerKeyId: Uint8Array;
  authorizedSans: Sans;
  /** Longest permitted notAfter - notBefore, backdating included. */
  maxLifetimeMs: number;
  subjectSpki: Uint8Array;
}

const REQUIRED_LEAF_EXTENSIONS = [
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.subjectAltName,
] as const;

/**
 * Checks a leaf TBS (decoded from the exact bytes about to be signed) against the profile, in the
 * spirit of Boulder's linter and zlint's RFC 5280 lints. Returns the list of problems; a CA must
 * refuse to sign when it is non-empty.
 */
export function lintLeaf(tbs: CertificateInfo, ctx: LeafLintContext): string[] {
  const problems: string[] = [];
  const fail = (m: string) => problems.push(m);

  // RFC 5280 §4.1.2.2: positive, at most 20 octets, minimally encoded.
  const s = tbs.serialContent;
  if (s.length === 0 || s.length > 20) fail("serial must be 1..20 octets");
  if (s[0]! & 0x80) fail("serial must be positive");
  if (s.length > 1 && s[0] === 0 && !(s[1]! & 0x80)) fail("serial is not minimally encoded");
  if (s.every((b) => b === 0)) fail("serial must not be zero");

  if (tbs.notBefore >= tbs.notAfter) fail("notBefore must precede notAfter");
  if (tbs.notBefore < ctx.issuerNotBefore) fail("notBefore precedes the issuer's validity");
  if (tbs.notAfter > ctx.issuerNotAfter) fail("notAfter exceeds the issuer's validity");
  if (tbs.notAfter.getTime() - tbs.notBefore.getTime() > ctx.maxLifetimeMs) fail("lifetime exceeds the maximum");

  if (tbs.isCA || tbs.pathLen !== undefined) fail("a leaf must not be a CA");
  for (const oid of REQUIRED_LEAF_EXTENSIONS) if (!tbs.extensionOids.includes(oid)) fail(`missing extension ${oid}`);
  if (new Set(tbs.extensionOids).size !== tbs.extensionOids.length) fail("duplicate extension (RFC 5280 §4.2)");

  const allowedKu = KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment;
  if (tbs.keyUsage & ~allowedKu) fail("key usage beyond digitalSignature/keyEncipherment");
  if (!(tbs.keyUsage & KeyUsageFlags.digitalSignature)) fail("key usage lacks digitalSignature");
  const allowedEku: string[] = [OID.kpServerAuth, OID.kpClientAuth];
  if (tbs.extKeyUsages.some((e) => !allowedEku.includes(e))) fail("extended key usage beyond serverAuth/clientAuth");

  if (sanCount(tbs.sans) === 0) fail("no subject alternative name");
  if (tbs.otherSanCount > 0) fail("SAN of a type other than DNS/IP/URI");
  if (!tbs.sans.dns.every(isDnsName)) fail("malformed DNS SAN");
  if (!tbs.sans.uri.every(isUriSan)) fail("malformed URI SAN");
  if (!sansSubset(tbs.sans, ctx.authorizedSans)) fail("SAN not authorised");
  if (tbs.subjectIsEmpty && !tbs.sanCritical) fail("empty subject requires a critical SAN (RFC 5280 §4.2.1.6)");
  if (tbs.subjectCommonName !== null && !tbs.sans.dns.includes(tbs.subjectCommonName)) fail("CN is not one of the DNS SANs");

  if (!tbs.authorityKeyId || !Buffer.from(tbs.authorityKeyId).equals(Buffer.from(ctx.issuerKeyId))) {
    fail("authority key identifier does not name the issuer");
  }
  if (!Buffer.from(tbs.spki).equals(Buffer.from(ctx.subjectSpki))) fail("subject public key differs from the request");
  return problems;
}

/**
 * After signing, the certificate as issued must still be what was asked for (Boulder ra.go
 * matchesCSR): same public key, exactly the requested SANs, not a CA.
 */
export function issuedMatchesRequest(issued: CertificateInfo, req: { spki: Uint8Array; sans: Sans }): string[] {
  const problems: string[] = [];
  if (!Buffer.from(issued.spki).equals(Buffer.from(req.spki))) problems.push("issued public key differs from the CSR");
  if (!(sansSubset(issued.sans, req.sans) && sansSubset(req.sans, issued.sans))) problems.push("issued SANs differ from the request");
  if (issued.isCA) problems.push("issued certificate is a CA");
  return problems;
}
