import { createHash } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import type { Issuer } from "../../issuance/issuer.js";
import { CERT_ID_HASHES, type CertIdHash, type CertIdQuery } from "./ocsp-request.js";

/**
 * An issuing CA as OCSP sees it: the CertID hashes that name it, precomputed for every supported
 * hash algorithm, and its ResponderID. The CA signs its own responses (RFC 6960 §4.2.2.2: the CA
 * that issued the certificate is an authorised responder), so no delegated responder cert exists.
 */
export class OcspIssuer {
  readonly keyIdHex: string;
  /** ResponderID byKey (RFC 6960 §4.2.1): SHA-1 of the subjectPublicKey BIT STRING value. */
  readonly responderKeyHash: Uint8Array;
  readonly #ids = new Map<CertIdHash, { name: Buffer; key: Buffer }>();

  constructor(readonly issuer: Issuer) {
    this.keyIdHex = issuer.keyIdHex;
    // RFC 6960 §4.1.1: issuerNameHash is over the DER of the issuer's name (the subject of the CA
    // certificate, which is the issuer field of the certificates it signed); issuerKeyHash is over
    // the public key's BIT STRING value, without tag, length and unused-bits octet.
    const publicKeyBits = new Uint8Array(AsnConvert.parse(issuer.info.spki, SubjectPublicKeyInfo).subjectPublicKey);
    for (const hash of Object.values(CERT_ID_HASHES)) {
      this.#ids.set(hash, {
        name: createHash(hash).update(issuer.info.subjectDer).digest(),
        key: createHash(hash).update(publicKeyBits).digest(),
      });
    }
    this.responderKeyHash = createHash("sha1").update(publicKeyBits).digest();
  }

  /** True when the CertID names this CA: both hashes must match (a name alone could be reused by another key). */
  names(q: CertIdQuery): boolean {
    const id = this.#ids.get(q.hash);
    return !!id && id.name.equals(q.issuerNameHash) && id.key.equals(q.issuerKeyHash);
  }

  get notAfter(): Date {
    return this.issuer.info.notAfter;
  }
}
