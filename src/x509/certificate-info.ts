import { createHash } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  GeneralName,
  KeyUsage,
  KeyUsageFlags,
  Name,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
} from "@peculiar/asn1-x509";
import { CaError } from "../core/errors.js";
import { canonicalIp, emptySans, type Sans } from "../core/sans.js";
import { serialFromBytes, type SerialHex } from "../core/serial.js";
import { walkCertificate } from "./certificate-walk.js";
import { DerError, DerReader, TAG } from "./der-reader.js";
import { OID } from "./oids.js";

/** What fleetca needs to know about a certificate (or a TBS about to be signed), decoded once. */
export interface CertificateInfo {
  serial: SerialHex;
  /** DER of the INTEGER's content octets, including a sign-padding 00 when present. */
  serialContent: Uint8Array;
  subjectCommonName: string | null;
  subjectIsEmpty: boolean;
  /** DER of the subject Name: chains are built by comparing these. */
  subjectDer: Uint8Array;
  issuerDer: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  spki: Uint8Array;
  sans: Sans;
  /** Any GeneralName other than DNS/IP/URI: a profile fleetca never issues. */
  otherSanCount: number;
  sanCritical: boolean;
  isCA: boolean;
  pathLen: number | undefined;
  keyUsage: number;
  extKeyUsages: string[];
  subjectKeyId: Uint8Array | null;
  authorityKeyId: Uint8Array | null;
  signatureAlgorithmOid: string;
  extensionOids: string[];
}

export function parseCertificateDer(der: Uint8Array): { cert: Certificate; info: CertificateInfo } {
  let cert: Certificate;
  try {
    cert = AsnConvert.parse(der, Certificate);
  } catch (e) {
    throw new CaError("bad_request", "not a DER X.509 certificate", { cause: e });
  }
  return { cert, info: describeTbs(cert.tbsCertificate) };
}

/**
 * What a certificate says, read by the DER walk (certificate-walk.ts) and, for the unusual shapes
 * the walk leaves alone, by the object model. For callers that need no `Certificate` object.
 */
export function describeCertificate(der: Uint8Array): CertificateInfo {
  return walkCertificate(der) ?? parseCertificateDer(der).info;
}

export function describeTbs(tbs: TBSCertificate): CertificateInfo {
  const exts = tbs.extensions ?? [];
  const ext = (oid: string) => exts.find((e) => e.extnID === oid);
  const sans = emptySans();
  let otherSanCount = 0;
  const sanExt = ext(OID.subjectAltName);
  if (sanExt) {
    const names = AsnConvert.parse(sanExt.extnValue.buffer, SubjectAlternativeName);
    for (const n of names) {
      if (!addGeneralName(sans, n)) otherSanCount++;
    }
  }
  const bcExt = ext(OID.basicConstraints);
  const bc = bcExt ? AsnConvert.parse(bcExt.extnValue.buffer, BasicConstraints) : undefined;
  const kuExt = ext(OID.keyUsage);
  const ekuExt = ext(OID.extKeyUsage);
  const skiExt = ext(OID.subjectKeyIdentifier);
  const akiExt = ext(OID.authorityKeyIdentifier);
  const aki = akiExt ? AsnConvert.parse(akiExt.extnValue.buffer, AuthorityKeyIdentifier) : undefined;
  const serialContent = new Uint8Array(tbs.serialNumber);
  return {
    serial: serialFromBytes(stripSignPad(serialContent)),
    serialContent,
    subjectCommonName: commonNameOf(tbs.subject),
    subjectIsEmpty: tbs.subject.length === 0,
    subjectDer: new Uint8Array(AsnConvert.serialize(tbs.subject)),
    issuerDer: new Uint8Array(AsnConvert.serialize(tbs.issuer)),
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    spki: new Uint8Array(AsnConvert.serialize(tbs.subjectPublicKeyInfo)),
    sans,
    otherSanCount,
    sanCritical: sanExt?.critical ?? false,
    isCA: bc?.cA ?? false,
    pathLen: bc?.pathLenConstraint,
    keyUsage: kuExt ? keyUsageFlags(AsnConvert.parse(kuExt.extnValue.buffer, KeyUsage)) : 0,
    extKeyUsages: ekuExt ? [...AsnConvert.parse(ekuExt.extnValue.buffer, ExtendedKeyUsage)] : [],
    subjectKeyId: skiExt ? new Uint8Array(AsnConvert.parse(skiExt.extnValue.buffer, SubjectKeyIdentifier).buffer) : null,
    authorityKeyId: aki?.keyIdentifier ? new Uint8Array(aki.keyIdentifier.buffer) : null,
    signatureAlgorithmOid: tbs.signature.algorithm,
    extensionOids: exts.map((e) => e.extnID),
  };
}

function addGeneralName(sans: Sans, n: GeneralName): boolean {
  if (n.dNSName !== undefined) sans.dns.push(n.dNSName.toLowerCase());
  else if (n.iPAddress !== undefined) sans.ip.push(canonicalIp(n.iPAddress));
  else if (n.uniformResourceIdentifier !== undefined) sans.uri.push(n.uniformResourceIdentifier);
  else return false;
  return true;
}

/** Decodes a GeneralNames list into Sans; counts anything that is not DNS/IP/URI. */
export function sansFromGeneralNames(names: Iterable<GeneralName>): { sans: Sans; other: number } {
  const sans = emptySans();
  let other = 0;
  for (const n of names) if (!addGeneralName(sans, n)) other++;
  return { sans, other };
}

function keyUsageFlags(ku: KeyUsage): number {
  let flags = 0;
  for (const name of ku.toJSON()) {
    const key = name === "crlSign" ? "cRLSign" : name;
    flags |= KeyUsageFlags[key as keyof typeof KeyUsageFlags] ?? 0;
  }
  return flags;
}

export function commonNameOf(name: Name): string | null {
  for (const rdn of name) for (const atv of rdn) if (atv.type === OID.commonName) return atv.value.toString();
  return null;
}

function stripSignPad(b: Uint8Array): Uint8Array {
  return b.length > 1 && b[0] === 0 ? b.subarray(1) : b;
}

/**
 * Key identifier per RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING
 * value. Used for SKI/AKI and as the issuer id in storage and in /crl/<issuer-key-id-hex>.
 */
export function keyIdentifier(spkiDer: Uint8Array): Uint8Array {
  return createHash("sha1").update(subjectPublicKeyBits(spkiDer)).digest();
}

/** The subjectPublicKey BIT STRING's octets (after the unused-bits octet) of a DER SPKI (RFC 5280 §4.1). */
function subjectPublicKeyBits(spkiDer: Uint8Array): Uint8Array {
  try {
    const top = new DerReader(spkiDer);
    const spki = top.inside(top.expect(TAG.SEQUENCE, "SubjectPublicKeyInfo"));
    top.finish("SubjectPublicKeyInfo");
    spki.expect(TAG.SEQUENCE, "algorithm");
    const bits = spki.content(spki.expect(TAG.BIT_STRING, "subjectPublicKey"));
    spki.finish("SubjectPublicKeyInfo");
    if (bits.length >= 1 && bits[0] === 0) return bits.subarray(1);
  } catch (e) {
    if (!(e instanceof DerError)) throw e;
  }
  // Not the DER shape every key has: the object model decides (and refuses what it cannot read).
  return new Uint8Array(AsnConvert.parse(spkiDer, SubjectPublicKeyInfo).subjectPublicKey);
}
