import { generateKeyPairSync, sign } from "node:crypto";
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
/** ecdsa-with-SHA256 (RFC 5758 §3.2). */
const ECDSA_SHA256 = "1.2.840.10045.4.3.2";

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
 * A fresh P-256 key and a PKCS#10 request (RFC 2986) for `sans`, built in-process so the agent
 * does not depend on an openssl binary. The subject is empty: identity is in the SANs
 * (RFC 5280 §4.2.1.6), and the CA decides what it grants.
 */
export function makeKeyAndCsr(sans: readonly string[]): KeyAndCsr {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
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
  // node's ECDSA signature is already the DER Ecdsa-Sig-Value RFC 5758 §3.2 wants.
  const signature = sign("sha256", Buffer.from(AsnConvert.serialize(info)), privateKey);
  const req = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: ECDSA_SHA256 }),
    signature: new Uint8Array(signature).buffer,
  });
  return {
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    csrPem: toPem(new Uint8Array(AsnConvert.serialize(req)), "CERTIFICATE REQUEST"),
  };
}
