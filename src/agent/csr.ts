import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { isIP } from "node:net";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { Attributes, CertificationRequest, CertificationRequestInfo } from "@peculiar/asn1-csr";
import {
  AlgorithmIdentifier,
  Attribute,
  Extension,
  Extensions,
  GeneralName,
  Name,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
  id_ce_subjectAltName,
} from "@peculiar/asn1-x509";
import { toPem } from "../x509/pem.js";

/** PKCS#9 extensionRequest (RFC 2985 §5.4.2), how a PKCS#10 request asks for SANs. */
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

/** Key types a host may ask for: the leaf allowlist src/x509/csr.ts accepts (RSA at its 2048-bit floor). */
export const LEAF_KEY_TYPES = ["p256", "p384", "ed25519", "rsa2048"] as const;
export type LeafKeyType = (typeof LEAF_KEY_TYPES)[number];

/**
 * How each key type is made and signs its request: the digest and the signature
 * AlgorithmIdentifier. ecdsa-with-SHA256/384 (RFC 5758 §3.2) and Ed25519 (RFC 8410 §3, which
 * hashes internally: no digest) omit parameters; sha256WithRSAEncryption carries an explicit
 * NULL (RFC 4055 §5, RFC 8017 Appendix A.2.4).
 */
const KEY_TYPES: Record<LeafKeyType, { generate(): { privateKey: KeyObject; publicKey: KeyObject }; hash: "sha256" | "sha384" | null; oid: string; nullParams: boolean }> = {
  p256: { generate: () => generateKeyPairSync("ec", { namedCurve: "P-256" }), hash: "sha256", oid: "1.2.840.10045.4.3.2", nullParams: false },
  p384: { generate: () => generateKeyPairSync("ec", { namedCurve: "P-384" }), hash: "sha384", oid: "1.2.840.10045.4.3.3", nullParams: false },
  ed25519: { generate: () => generateKeyPairSync("ed25519"), hash: null, oid: "1.3.101.112", nullParams: false },
  // 65537: the CA refuses smaller exponents (CA/B BRs §6.1.6).
  rsa2048: { generate: () => generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 65537 }), hash: "sha256", oid: "1.2.840.113549.1.1.11", nullParams: true },
};

/** A SAN as RFC 5280 §4.2.1.6 GeneralName: IP literal, URI (has a scheme), else DNS name. */
export function generalName(san: string): GeneralName {
  if (isIP(san)) return new GeneralName({ iPAddress: san }) // asn1-x509 encodes the octets (RFC 5280 §4.2.1.6);
  if (/^[a-z][a-z0-9+.-]*:/i.test(san)) return new GeneralName({ uniformResourceIdentifier: san });
  return new GeneralName({ dNSName: san });
}

export interface KeyAndCsr {
  /** PKCS#8 PEM; stays on this host (written only to key.pem, mode 0600). */
  keyPem: string;
  csrPem: string;
}

/**
 * A fresh key (P-256 unless asked otherwise) and a PKCS#10 request (RFC 2986) for `sans`, built
 * in-process so neither cert-agent nor `fleetca certificate` depends on an openssl binary. The
 * subject is empty: identity is in the SANs (RFC 5280 §4.2.1.6), and the CA decides what it grants.
 */
export function makeKeyAndCsr(sans: readonly string[], keyType: LeafKeyType = "p256"): KeyAndCsr {
  const scheme = KEY_TYPES[keyType];
  const { privateKey, publicKey } = scheme.generate();
  const spki = AsnConvert.parse(publicKey.export({ type: "spki", format: "der" }), SubjectPublicKeyInfo);
  const san = new Extension({
    extnID: id_ce_subjectAltName,
    critical: false,
    extnValue: new OctetString(AsnConvert.serialize(new SubjectAlternativeName(sans.map(generalName)))),
  });
  const info = new CertificationRequestInfo({
    version: 0,
    subject: new Name([]),
    subjectPKInfo: spki,
    attributes: new Attributes([new Attribute({ type: EXTENSION_REQUEST, values: [AsnConvert.serialize(new Extensions([san]))] })]),
  });
  // Proof of possession (RFC 2986 §3): the request is signed with the key it asks a cert for.
  // node's ECDSA signature is already the DER Ecdsa-Sig-Value RFC 5758 §3.2 wants, its RSA one
  // PKCS#1 v1.5 (RFC 8017 §8.2), and Ed25519 is PureEdDSA over the message itself (RFC 8032 §5.1).
  const signature = sign(scheme.hash, Buffer.from(AsnConvert.serialize(info)), privateKey);
  const req = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: scheme.oid, parameters: scheme.nullParams ? null : undefined }),
    signature: new Uint8Array(signature).buffer,
  });
  return {
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    csrPem: toPem(new Uint8Array(AsnConvert.serialize(req)), "CERTIFICATE REQUEST"),
  };
}
