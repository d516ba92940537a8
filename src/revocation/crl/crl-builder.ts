import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AuthorityKeyIdentifier,
  CRLNumber,
  CRLReason,
  Extension,
  KeyIdentifier,
  KeyUsageFlags,
  RevokedCertificate,
  TBSCertList,
  Time,
  Version,
} from "@peculiar/asn1-x509";
import { CRL_REASONS } from "../../core/revocation-reason.js";
import type { Issuer } from "../../issuance/issuer.js";
import { signTbs } from "../../issuance/sign-tbs.js";
import type { RevokedEntry } from "../../storage/ports.js";
import { OID } from "../../x509/oids.js";
import { signatureAlgorithmId, type IssuerRef } from "../../x509/profile.js";
import { parseCrl, type CrlInfo } from "./crl-info.js";

/** One CRL to sign: its number, its window, and the certificates it lists. */
export interface CrlContent {
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: readonly RevokedEntry[];
}

export interface SignedCrl extends CrlContent {
  der: Uint8Array;
}

/** RFC 5280 §5.2.3: a CRL number fits in 20 octets; fleetca's stay far below 2^53. */
const MAX_CRL_NUMBER = Number.MAX_SAFE_INTEGER;

/**
 * The TBSCertList (RFC 5280 §5.1.2), v2 because it carries extensions: signature algorithm of
 * the issuer's key, issuer = the CA's subject Name byte for byte (so relying parties match it to
 * the certificates it issued), AKI (§5.2.1) and CRL number (§5.2.3), both non-critical.
 * Pure: no key, no clock, no I/O.
 */
export function crlTbs(issuer: IssuerRef, c: CrlContent): TBSCertList {
  return new TBSCertList({
    version: Version.v2,
    signature: signatureAlgorithmId(issuer.scheme),
    issuer: issuer.subject,
    thisUpdate: new Time(c.thisUpdate),
    nextUpdate: new Time(c.nextUpdate),
    // §5.1.2.6: "When there are no revoked certificates, the revoked certificates list MUST be
    // absent" (an empty SEQUENCE would be a different, non-conforming encoding).
    revokedCertificates: c.entries.length > 0 ? c.entries.map(revokedCertificate) : undefined,
    crlExtensions: [
      ext(OID.authorityKeyIdentifier, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(issuer.keyId) })),
      ext(OID.cRLNumber, new CRLNumber(c.crlNumber)),
    ],
  });
}

function revokedCertificate(e: RevokedEntry): RevokedCertificate {
  // §5.3.1: "the reason code CRL entry extension SHOULD be absent instead of using the
  // unspecified (0) reasonCode value", so unspecified and unrecorded reasons carry no extension.
  const reason = e.reason ?? CRL_REASONS.unspecified;
  return new RevokedCertificate({
    userCertificate: serialInteger(e.serial),
    revocationDate: new Time(e.revokedAt),
    crlEntryExtensions: reason === CRL_REASONS.unspecified ? undefined : [ext(OID.cRLReasons, new CRLReason(reason))],
  });
}

function ext(oid: string, value: unknown): Extension {
  return new Extension({ extnID: oid, critical: false, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/**
 * The serial's DER INTEGER content (RFC 5280 §4.1.2.2, positive): fleetca stores serials without
 * the sign octet, as `openssl x509 -serial` prints them, so it goes back in when the top bit is set.
 */
function serialInteger(serialHex: string): ArrayBuffer {
  const b = Buffer.from(serialHex, "hex");
  const content = b[0]! & 0x80 ? Buffer.concat([Buffer.of(0), b]) : b;
  return content.buffer.slice(content.byteOffset, content.byteOffset + content.byteLength) as ArrayBuffer;
}

/** What must hold before the CA key signs a CRL (DESIGN habit 1: lint before sign). */
export function lintCrl(issuer: Issuer, c: CrlContent): string[] {
  const problems: string[] = [];
  if (!(issuer.info.keyUsage & KeyUsageFlags.cRLSign)) problems.push("issuer key usage lacks cRLSign (RFC 5280 §4.2.1.3)");
  if (!Number.isSafeInteger(c.crlNumber) || c.crlNumber < 0 || c.crlNumber > MAX_CRL_NUMBER) problems.push(`bad CRL number ${c.crlNumber}`);
  if (c.thisUpdate.getTime() % 1000 !== 0) problems.push("thisUpdate has sub-second precision the encoding would drop");
  if (c.nextUpdate <= c.thisUpdate) problems.push("nextUpdate is not after thisUpdate");
  if (c.nextUpdate > issuer.info.notAfter) problems.push("nextUpdate is after the issuer's notAfter");
  if (c.thisUpdate < issuer.info.notBefore) problems.push("thisUpdate is before the issuer's notBefore");
  const seen = new Set<string>();
  for (const e of c.entries) {
    if (seen.has(e.serial)) problems.push(`serial ${e.serial} listed twice`);
    seen.add(e.serial);
    if (!/^[0-9a-f]{2,40}$/.test(e.serial)) problems.push(`bad serial ${e.serial}`);
    if (e.reason !== null && !(Object.values(CRL_REASONS) as number[]).includes(e.reason)) problems.push(`bad reason ${e.reason} for ${e.serial}`);
  }
  return problems;
}

/**
 * Lints, signs with the issuer's Signer and reads the result back: a CertificateList has the
 * same outer shape as a Certificate (RFC 5280 §5.1.1), so `signTbs` wraps and checks the
 * signature; the re-parse checks that what goes out says what was asked.
 */
export async function signCrl(issuer: Issuer, c: CrlContent): Promise<SignedCrl> {
  const problems = lintCrl(issuer, c);
  if (problems.length > 0) throw new Error(`CRL lint failed: ${problems.join("; ")}`);
  const tbsDer = new Uint8Array(AsnConvert.serialize(crlTbs(issuer.ref, c)));
  const der = await signTbs(issuer.signer, tbsDer);
  const mismatch = compare(parseCrl(der), issuer, c);
  if (mismatch) throw new Error(`signed CRL does not match its content: ${mismatch}`);
  return { ...c, der };
}

function compare(got: CrlInfo, issuer: Issuer, want: CrlContent): string | null {
  if (got.crlNumber !== want.crlNumber) return "CRL number";
  if (!Buffer.from(got.issuerDer).equals(Buffer.from(issuer.info.subjectDer))) return "issuer name";
  if (!got.authorityKeyId || !Buffer.from(got.authorityKeyId).equals(Buffer.from(issuer.keyId))) return "authority key identifier";
  if (got.thisUpdate.getTime() !== want.thisUpdate.getTime()) return "thisUpdate";
  if (got.nextUpdate?.getTime() !== want.nextUpdate.getTime()) return "nextUpdate";
  if (got.entries.length !== want.entries.length) return "entry count";
  for (const [i, e] of want.entries.entries()) {
    const g = got.entries[i]!;
    const reason = e.reason === CRL_REASONS.unspecified ? null : e.reason;
    if (g.serial !== e.serial || g.reason !== reason) return `entry ${e.serial}`;
  }
  return null;
}
