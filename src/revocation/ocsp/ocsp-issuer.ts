import { createHash, createPublicKey, verify as cryptoVerify, constants, type KeyObject } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { SIGNATURE_SCHEMES } from "../../core/key-type.js";
import type { SerialHex } from "../../core/serial.js";
import type { Issuer } from "../../issuance/issuer.js";
import { derBitString, derSequence, derTlv, derUnsignedInteger } from "../../x509/der.js";
import { signatureAlgorithmId } from "../../x509/profile.js";
import { CERT_ID_HASHES, type CertIdHash, type CertIdQuery } from "./ocsp-request.js";

/** AlgorithmIdentifier { id-sha1, NULL }: the CertID hash OpenSSL, stapling servers and most clients send. */
const SHA1_ALGORITHM = derSequence(Uint8Array.of(0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a), Uint8Array.of(0x05, 0x00));

/**
 * An issuing CA as OCSP sees it: the CertID hashes that name it, precomputed for every supported
 * hash algorithm, its ResponderID, and its signature. The CA signs its own responses (RFC 6960
 * §4.2.2.2: the CA that issued the certificate is an authorised responder), so no delegated
 * responder cert exists.
 */
export class OcspIssuer {
  readonly keyIdHex: string;
  /** ResponderID byKey (RFC 6960 §4.2.1): SHA-1 of the subjectPublicKey BIT STRING value. */
  readonly responderKeyHash: Uint8Array;
  readonly #ids = new Map<CertIdHash, { name: Buffer; key: Buffer }>();
  readonly #signatureAlgorithm: Uint8Array;
  readonly #publicKey: KeyObject;

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
    this.#signatureAlgorithm = new Uint8Array(AsnConvert.serialize(signatureAlgorithmId(SIGNATURE_SCHEMES[issuer.signer.keyType])));
    this.#publicKey = createPublicKey({ key: Buffer.from(issuer.signer.publicKeySpki), format: "der", type: "spki" });
  }

  /** True when the CertID names this CA: both hashes must match (a name alone could be reused by another key). */
  names(q: CertIdQuery): boolean {
    const id = this.#ids.get(q.hash);
    return !!id && id.name.equals(q.issuerNameHash) && id.key.equals(q.issuerKeyHash);
  }

  /**
   * The SHA-1 CertID of one of this CA's serials, DER as OpenSSL writes it (hash parameters NULL):
   * the form pre-signed for every certificate and stored for every worker (cfssl and Boulder
   * pre-sign this one too). A request whose CertID has exactly these bytes gets the stored answer.
   */
  sha1CertId(serial: SerialHex): CertIdQuery {
    const id = this.#ids.get("sha1")!;
    const der = derSequence(SHA1_ALGORITHM, derTlv(0x04, id.name), derTlv(0x04, id.key), derUnsignedInteger(Buffer.from(serial, "hex")));
    return { der, hash: "sha1", issuerNameHash: id.name, issuerKeyHash: id.key, serial };
  }

  /**
   * Signs ResponseData and returns BasicOCSPResponse ::= SEQUENCE { tbsResponseData,
   * signatureAlgorithm, signature BIT STRING } (RFC 6960 §4.2.1; no certs, §4.2.2.2).
   *
   * RSA and Ed25519 signatures are verified before they leave: a faulty RSA-CRT signature gives
   * the key away (Boneh–DeMillo–Lipton, Lenstra), and so can a fault in a deterministic-nonce
   * Ed25519 signature. ECDSA here uses a fresh random nonce per signature, where a fault yields a
   * signature that fails at the client but no key; skipping its verification (~60 µs, twice the
   * signature itself) is what lets pre-signing run at several thousand answers a second.
   *
   * `onThisThread`: sign on the calling thread when the signer can (Signer.signOnThisThread).
   */
  async signBasic(tbs: Uint8Array, onThisThread = false): Promise<Uint8Array> {
    const signer = this.issuer.signer;
    const sig = onThisThread && signer.signOnThisThread ? signer.signOnThisThread(tbs) : await signer.sign(tbs);
    if (!signer.keyType.startsWith("ecdsa") && !this.#verifies(tbs, sig)) throw new Error("signer produced a signature that does not verify");
    return derSequence(tbs, this.#signatureAlgorithm, derBitString(sig));
  }

  #verifies(data: Uint8Array, sig: Uint8Array): boolean {
    const hash = SIGNATURE_SCHEMES[this.issuer.signer.keyType].hash;
    const key = this.#publicKey;
    return key.asymmetricKeyType === "rsa"
      ? cryptoVerify(hash, data, { key, padding: constants.RSA_PKCS1_PADDING }, sig)
      : cryptoVerify(hash, data, key, sig);
  }

  get notAfter(): Date {
    return this.issuer.info.notAfter;
  }
}
