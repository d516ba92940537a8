import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AccessDescription,
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityInfoAccessSyntax,
  AuthorityKeyIdentifier,
  BasicConstraints,
  CRLDistributionPoints,
  DistributionPoint,
  DistributionPointName,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
} from "@peculiar/asn1-x509";
import type { SignatureScheme, SubjectKeyAlgorithm } from "../core/key-type.js";
import type { Sans } from "../core/sans.js";
import { OID } from "./oids.js";

/** The issuing side of a certificate: what a TBS needs to name and chain to its issuer. */
export interface IssuerRef {
  subject: Name;
  keyId: Uint8Array;
  scheme: SignatureScheme;
}

/** Where relying parties fetch revocation data and the issuer cert (SPEC.md "Defaults"). */
export interface PublicationUrls {
  crl: string;
  ocsp: string;
  caIssuers: string;
}

export interface LeafProfileInput {
  serialContent: Uint8Array;
  issuer: IssuerRef;
  subjectSpki: Uint8Array;
  subjectKeyId: Uint8Array;
  subjectKey: SubjectKeyAlgorithm;
  sans: Sans;
  notBefore: Date;
  notAfter: Date;
  urls: PublicationUrls;
}

/** X.520 ub-common-name: a CN longer than 64 characters is not encodable. */
const MAX_CN = 64;

export function signatureAlgorithmId(scheme: SignatureScheme): AlgorithmIdentifier {
  return new AlgorithmIdentifier({ algorithm: scheme.oid, parameters: scheme.nullParams ? null : undefined });
}

function ext(oid: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID: oid, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

function keyUsage(flags: number): KeyUsage {
  return new KeyUsage(flags);
}

export function nameOf(attrs: { cn?: string; o?: string }): Name {
  const rdns: RelativeDistinguishedName[] = [];
  const push = (type: string, value: string) =>
    rdns.push(new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: value }) })]));
  if (attrs.o) push(OID.organizationName, attrs.o);
  if (attrs.cn) push(OID.commonName, attrs.cn);
  return new Name(rdns);
}

function generalNames(sans: Sans): GeneralName[] {
  return [
    ...sans.dns.map((d) => new GeneralName({ dNSName: d })),
    ...sans.ip.map((ip) => new GeneralName({ iPAddress: ip })),
    ...sans.uri.map((u) => new GeneralName({ uniformResourceIdentifier: u })),
  ];
}

/**
 * The leaf profile: an end-entity TLS client+server certificate. Subject CN is the first DNS SAN
 * (if it fits); otherwise the subject is empty and the SAN extension critical (RFC 5280 §4.2.1.6).
 * Extensions in this order: basicConstraints, keyUsage, extKeyUsage, SKI, AKI, SAN, CRL DP, AIA.
 *
 * This is the object-model build: obviously right, and slow (~2 ms a leaf). The CA signs what
 * leaf-template.ts splices from the same extension builders; test/leaf-template.test.ts holds the
 * two to the same bytes.
 */
export function leafTbs(p: LeafProfileInput): TBSCertificate {
  const cn = leafSubjectCommonName(p.sans);
  const subject = cn !== null ? nameOf({ cn }) : new Name([]);
  const extensions = new Extensions([
    leafBasicConstraints(),
    leafKeyUsage(p.subjectKey),
    leafExtKeyUsage(),
    ext(OID.subjectKeyIdentifier, false, new SubjectKeyIdentifier(p.subjectKeyId)),
    authorityKeyIdExtension(p.issuer.keyId),
    ext(OID.subjectAltName, subject.length === 0, new SubjectAlternativeName(generalNames(p.sans))),
    ...leafPublicationExtensions(p.urls),
  ]);
  return new TBSCertificate({
    version: Version.v3,
    serialNumber: toArrayBuffer(p.serialContent),
    signature: signatureAlgorithmId(p.issuer.scheme),
    issuer: p.issuer.subject,
    validity: new Validity({ notBefore: p.notBefore, notAfter: p.notAfter }),
    subject,
    subjectPublicKeyInfo: AsnConvert.parse(p.subjectSpki, SubjectPublicKeyInfo),
    extensions,
  });
}

/** The leaf's subject CN: its first DNS SAN when that fits X.520's 64 characters, else none. */
export function leafSubjectCommonName(sans: Sans): string | null {
  const firstDns = sans.dns[0];
  return firstDns && firstDns.length <= MAX_CN ? firstDns : null;
}

/** Critical basicConstraints with cA FALSE (RFC 5280 §4.2.1.9; DER omits the DEFAULT, so an empty SEQUENCE). */
export function leafBasicConstraints(): Extension {
  return ext(OID.basicConstraints, true, new BasicConstraints({ cA: false }));
}

/** digitalSignature, plus keyEncipherment for RSA keys (RSA key transport in TLS 1.2), critical (§4.2.1.3). */
export function leafKeyUsage(subjectKey: SubjectKeyAlgorithm): Extension {
  return ext(OID.keyUsage, true, keyUsage(KeyUsageFlags.digitalSignature | (subjectKey.kind === "rsa" ? KeyUsageFlags.keyEncipherment : 0)));
}

export function leafExtKeyUsage(): Extension {
  return ext(OID.extKeyUsage, false, new ExtendedKeyUsage([OID.kpServerAuth, OID.kpClientAuth]));
}

export function authorityKeyIdExtension(issuerKeyId: Uint8Array): Extension {
  return ext(OID.authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(issuerKeyId) }));
}

/** CRL distribution point (§4.2.1.13) and authority information access: OCSP + caIssuers (§4.2.2.1). */
export function leafPublicationExtensions(urls: PublicationUrls): [Extension, Extension] {
  return [
    ext(
      OID.crlDistributionPoints,
      false,
      new CRLDistributionPoints([
        new DistributionPoint({
          distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: urls.crl })] }),
        }),
      ]),
    ),
    ext(
      OID.authorityInfoAccess,
      false,
      new AuthorityInfoAccessSyntax([
        new AccessDescription({ accessMethod: OID.adOcsp, accessLocation: new GeneralName({ uniformResourceIdentifier: urls.ocsp }) }),
        new AccessDescription({
          accessMethod: OID.adCaIssuers,
          accessLocation: new GeneralName({ uniformResourceIdentifier: urls.caIssuers }),
        }),
      ]),
    ),
  ];
}

export interface CaProfileInput {
  serialContent: Uint8Array;
  subject: Name;
  subjectSpki: Uint8Array;
  subjectKeyId: Uint8Array;
  /** Absent for a self-signed root. */
  issuer?: IssuerRef;
  selfScheme: SignatureScheme;
  pathLen: number;
  notBefore: Date;
  notAfter: Date;
  /** The issuing root's CRL (RFC 5280 §4.2.1.13), so relying parties that check the whole chain find it. */
  crlUrl?: string;
}

/**
 * Root and intermediate CA profile (RFC 5280 §4.2.1.9, §4.2.1.3): critical basicConstraints with
 * a path length, critical keyUsage keyCertSign+cRLSign (+digitalSignature so the CA key itself
 * may sign OCSP responses, RFC 6960 §4.2.2.2), SKI; AKI when issued by another CA.
 */
export function caTbs(p: CaProfileInput): TBSCertificate {
  const list = [
    ext(OID.basicConstraints, true, new BasicConstraints({ cA: true, pathLenConstraint: p.pathLen })),
    ext(
      OID.keyUsage,
      true,
      keyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature),
    ),
    ext(OID.subjectKeyIdentifier, false, new SubjectKeyIdentifier(p.subjectKeyId)),
  ];
  if (p.issuer) {
    list.push(ext(OID.authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(p.issuer.keyId) })));
  }
  if (p.crlUrl) {
    list.push(
      ext(
        OID.crlDistributionPoints,
        false,
        new CRLDistributionPoints([
          new DistributionPoint({ distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: p.crlUrl })] }) }),
        ]),
      ),
    );
  }
  return new TBSCertificate({
    version: Version.v3,
    serialNumber: toArrayBuffer(p.serialContent),
    signature: signatureAlgorithmId(p.issuer?.scheme ?? p.selfScheme),
    issuer: p.issuer?.subject ?? p.subject,
    validity: new Validity({ notBefore: p.notBefore, notAfter: p.notAfter }),
    subject: p.subject,
    subjectPublicKeyInfo: AsnConvert.parse(p.subjectSpki, SubjectPublicKeyInfo),
    extensions: new Extensions(list),
  });
}

function toArrayBuffer(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}
