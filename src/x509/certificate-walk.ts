import { emptySans } from "../core/sans.js";
import { serialFromBytes } from "../core/serial.js";
import type { CertificateInfo } from "./certificate-info.js";
import { DerError, DerReader, TAG, contextTag, readSmallUint, readTime, type Tlv } from "./der-reader.js";
import { OID } from "./oids.js";
import { Unusual, strictBoolean, strictOid, walkGeneralNames, walkName, walkSpkiShape } from "./ordinary-der.js";

/**
 * A certificate (or a TBS about to be signed) read by walking its DER once (RFC 5280 §4.1,
 * X.690 §10): TLV headers and copies of the few values fleetca keeps, where the ASN.1 object
 * model builds a tree of objects and re-serialises names and keys. It is what the CA lints before
 * signing (every TLV of the exact bytes is visited, lengths checked to be DER, nothing left over)
 * and what renew reads from a presented certificate.
 *
 * Like csr-walk.ts it only says yes to the ordinary shape (what fleetca and common CAs issue: v3,
 * whole-second times, ASCII names, the extensions below in their usual forms) and answers null for
 * anything else, for which the caller uses the object model (certificate-info.ts describeTbs).
 * test/certificate-walk.test.ts holds both readers to the same answers.
 */
export function walkTbs(tbsDer: Uint8Array): CertificateInfo | null {
  try {
    const top = new DerReader(tbsDer);
    const t = top.expect(TAG.SEQUENCE, "TBSCertificate");
    top.finish("TBSCertificate");
    return readTbs(top, t);
  } catch (e) {
    if (e instanceof DerError) return null;
    throw e;
  }
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING } (RFC 5280 §4.1.1). */
export function walkCertificate(der: Uint8Array): CertificateInfo | null {
  try {
    const top = new DerReader(der);
    const certTlv = top.expect(TAG.SEQUENCE, "Certificate");
    top.finish("Certificate");
    const cert = top.inside(certTlv);
    const tbsTlv = cert.expect(TAG.SEQUENCE, "tbsCertificate");
    const alg = cert.inside(cert.expect(TAG.SEQUENCE, "signatureAlgorithm"));
    strictOid(alg.content(alg.expect(TAG.OID, "algorithm")));
    if (!alg.done) alg.next();
    alg.finish("signatureAlgorithm");
    const sig = cert.content(cert.expect(TAG.BIT_STRING, "signatureValue"));
    if (sig.length < 1 || sig[0] !== 0) throw new Unusual("signature has unused bits");
    cert.finish("Certificate");
    return readTbs(cert, tbsTlv);
  } catch (e) {
    if (e instanceof DerError) return null;
    throw e;
  }
}

/** A copy into a plain Uint8Array: the value outlives the buffer it came from (and is compared as such). */
function copy(r: DerReader, start: number, end: number): Uint8Array {
  return new Uint8Array(r.buf.subarray(start, end));
}

/**
 * TBSCertificate ::= SEQUENCE { version [0] EXPLICIT (v3 only here), serialNumber, signature,
 * issuer, validity, subject, subjectPublicKeyInfo, extensions [3] EXPLICIT } (RFC 5280 §4.1.2);
 * issuerUniqueID/subjectUniqueID (§4.1.2.8, never issued by a conforming CA) are unusual.
 */
function readTbs(parent: DerReader, t: Tlv): CertificateInfo {
  const r = parent.inside(t);
  const versionTlv = r.expect(contextTag(0), "version");
  const v = r.inside(versionTlv);
  const version = readSmallUint(v.content(v.expect(TAG.INTEGER, "version")));
  v.finish("version");
  if (version !== 2) throw new Unusual("not a v3 certificate");

  const serialTlv = r.expect(TAG.INTEGER, "serialNumber");
  const serialContent = copy(r, serialTlv.contentStart, serialTlv.end);
  if (serialContent.length === 0) throw new Unusual("empty serial");

  const sigAlg = r.inside(r.expect(TAG.SEQUENCE, "signature"));
  const signatureAlgorithmOid = strictOid(sigAlg.content(sigAlg.expect(TAG.OID, "algorithm")));
  if (!sigAlg.done) sigAlg.next();
  sigAlg.finish("signature");

  const issuerTlv = r.expect(TAG.SEQUENCE, "issuer");
  walkName(r, issuerTlv);

  const validity = r.inside(r.expect(TAG.SEQUENCE, "validity"));
  const nb = validity.next();
  const na = validity.next();
  validity.finish("validity");
  const notBefore = readTime(nb.tag, validity.content(nb));
  const notAfter = readTime(na.tag, validity.content(na));

  const subjectTlv = r.expect(TAG.SEQUENCE, "subject");
  const subject = walkName(r, subjectTlv);

  const spkiTlv = r.expect(TAG.SEQUENCE, "subjectPublicKeyInfo");
  walkSpkiShape(r, spkiTlv);

  const extsTlv = r.expect(contextTag(3), "extensions");
  r.finish("TBSCertificate");

  const info: CertificateInfo = {
    serial: serialFromBytes(serialContent.length > 1 && serialContent[0] === 0 ? serialContent.subarray(1) : serialContent),
    serialContent,
    subjectCommonName: subject.commonName,
    subjectIsEmpty: subject.empty,
    subjectDer: copy(r, subjectTlv.start, subjectTlv.end),
    issuerDer: copy(r, issuerTlv.start, issuerTlv.end),
    notBefore,
    notAfter,
    spki: copy(r, spkiTlv.start, spkiTlv.end),
    sans: emptySans(),
    otherSanCount: 0,
    sanCritical: false,
    isCA: false,
    pathLen: undefined,
    keyUsage: 0,
    extKeyUsages: [],
    subjectKeyId: null,
    authorityKeyId: null,
    signatureAlgorithmOid,
    extensionOids: [],
  };
  readExtensions(r.inside(extsTlv), info);
  return info;
}

/**
 * Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension (RFC 5280 §4.1.2.9). The first occurrence of
 * each known extension is decoded, as the object model's reader does; every OID is listed, so
 * the lint still sees duplicates. An unknown extension is listed and skipped.
 */
function readExtensions(outer: DerReader, info: CertificateInfo): void {
  const exts = outer.inside(outer.expect(TAG.SEQUENCE, "Extensions"));
  outer.finish("extensions");
  if (exts.done) throw new Unusual("empty Extensions");
  const seen = new Set<string>();
  while (!exts.done) {
    // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    const e = exts.inside(exts.expect(TAG.SEQUENCE, "Extension"));
    const id = strictOid(e.content(e.expect(TAG.OID, "extnID")));
    const criticalTlv = e.optional(TAG.BOOLEAN);
    const critical = criticalTlv ? strictBoolean(e.content(criticalTlv)) : false;
    // X.690 §11.5: a DEFAULT value is never encoded in DER.
    if (criticalTlv && !critical) throw new Unusual("critical FALSE encoded");
    const value = e.content(e.expect(TAG.OCTET_STRING, "extnValue"));
    e.finish("Extension");
    info.extensionOids.push(id);
    if (seen.has(id)) continue;
    seen.add(id);
    switch (id) {
      case OID.subjectAltName:
        info.sans = walkGeneralNames(value);
        info.sanCritical = critical;
        break;
      case OID.basicConstraints:
        readBasicConstraints(value, info);
        break;
      case OID.keyUsage:
        info.keyUsage = readKeyUsage(value);
        break;
      case OID.extKeyUsage:
        info.extKeyUsages = readExtKeyUsage(value);
        break;
      case OID.subjectKeyIdentifier: {
        const r = new DerReader(value);
        const k = r.expect(TAG.OCTET_STRING, "SubjectKeyIdentifier");
        r.finish("SubjectKeyIdentifier");
        info.subjectKeyId = copy(r, k.contentStart, k.end);
        break;
      }
      case OID.authorityKeyIdentifier:
        info.authorityKeyId = readAuthorityKeyId(value);
        break;
      default:
        // Read as a whole TLV so a malformed value of an unknown extension is still caught here.
        checkOneTlv(value);
    }
  }
}

function checkOneTlv(value: Uint8Array): void {
  const r = new DerReader(value);
  r.next();
  r.finish("extnValue");
}

/** BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER (0..MAX) OPTIONAL } (§4.2.1.9). */
function readBasicConstraints(value: Uint8Array, info: CertificateInfo): void {
  const top = new DerReader(value);
  const r = top.inside(top.expect(TAG.SEQUENCE, "BasicConstraints"));
  top.finish("BasicConstraints");
  const ca = r.optional(TAG.BOOLEAN);
  if (ca) {
    info.isCA = strictBoolean(r.content(ca));
    if (!info.isCA) throw new Unusual("cA FALSE encoded");
  }
  const len = r.optional(TAG.INTEGER);
  if (len) info.pathLen = readSmallUint(r.content(len));
  r.finish("BasicConstraints");
}

/**
 * KeyUsage ::= BIT STRING (§4.2.1.3): bit n (counted from the first octet's top bit) is the flag
 * 1 << n, as @peculiar/asn1-x509's KeyUsageFlags number them. DER drops trailing zero bits
 * (X.690 §11.2.2), so the unused-bits count must leave the last octet's lowest kept bit set.
 */
function readKeyUsage(value: Uint8Array): number {
  const r = new DerReader(value);
  const bits = r.content(r.expect(TAG.BIT_STRING, "KeyUsage"));
  r.finish("KeyUsage");
  if (bits.length < 2 || bits.length > 3) throw new Unusual("KeyUsage length");
  const unused = bits[0]!;
  const last = bits[bits.length - 1]!;
  if (unused > 7 || last & ((1 << unused) - 1) || !(last & (1 << unused))) throw new Unusual("KeyUsage not DER");
  let flags = 0;
  for (let i = 1; i < bits.length; i++) {
    for (let b = 0; b < 8; b++) if (bits[i]! & (0x80 >> b)) flags |= 1 << ((i - 1) * 8 + b);
  }
  return flags;
}

/** ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId (§4.2.1.12). */
function readExtKeyUsage(value: Uint8Array): string[] {
  const top = new DerReader(value);
  const r = top.inside(top.expect(TAG.SEQUENCE, "ExtKeyUsageSyntax"));
  top.finish("ExtKeyUsageSyntax");
  const out: string[] = [];
  while (!r.done) out.push(strictOid(r.content(r.expect(TAG.OID, "KeyPurposeId"))));
  if (out.length === 0) throw new Unusual("empty ExtKeyUsageSyntax");
  return out;
}

/** AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING, … } (§4.2.1.1); the other fields are unusual. */
function readAuthorityKeyId(value: Uint8Array): Uint8Array | null {
  const top = new DerReader(value);
  const r = top.inside(top.expect(TAG.SEQUENCE, "AuthorityKeyIdentifier"));
  top.finish("AuthorityKeyIdentifier");
  const k = r.optional(contextTag(0, false));
  r.finish("AuthorityKeyIdentifier");
  return k ? copy(r, k.contentStart, k.end) : null;
}
