import { createPublicKey, createVerify, verify as cryptoVerify, constants, type KeyObject } from "node:crypto";
import { LARGE_INPUT_OCTETS, updateInSlices } from "../signing/digest-in-slices.js";
import { AsnConvert } from "@peculiar/asn1-schema";
import type { TBSCertificate } from "@peculiar/asn1-x509";
import { SIGNATURE_SCHEMES } from "../core/key-type.js";
import type { Signer } from "../signing/signer.js";
import { derBitString, derSequence } from "../x509/der.js";
import { signatureAlgorithmId } from "../x509/profile.js";

/**
 * Signs the exact TBS bytes and wraps them as Certificate ::= SEQUENCE { tbs, algorithm, BIT
 * STRING signature } (RFC 5280 §4.1), then verifies the signature with the issuer's public key so
 * a faulty signer (or an RSA fault) can never hand out a bad certificate. A CertificateList has
 * the same outer shape (RFC 5280 §5.1), so CRLs are signed here too.
 */
export async function signTbs(signer: Signer, tbsDer: Uint8Array): Promise<Uint8Array> {
  const scheme = SIGNATURE_SCHEMES[signer.keyType];
  const sig = await signer.sign(tbsDer);
  const algDer = new Uint8Array(AsnConvert.serialize(signatureAlgorithmId(scheme)));
  // On libuv's thread pool, like the signature itself: the event loop only dispatches.
  const verified = await new Promise<boolean>((resolve, reject) =>
    cryptoVerify(scheme.hash, tbsDer, verifyOptions(signerPublicKey(signer)), sig, (err, ok) => (err ? reject(err) : resolve(ok))),
  );
  if (!verified) {
    throw new Error("signer produced a signature that does not verify");
  }
  return derSequence(tbsDer, algDer, derBitString(sig));
}

/**
 * The signer's public key as a KeyObject, imported once per Signer (bindIssuer makes it when the
 * issuer is bound) and reused for every verify-after-sign: importing the SPKI again for each
 * certificate was 2.5 % of the sign path's main thread. Keyed by the Signer object, whose
 * publicKeySpki never changes; a Signer that is dropped takes its entry with it.
 */
const signerKeys = new WeakMap<Signer, KeyObject>();

export function signerPublicKey(signer: Signer): KeyObject {
  let key = signerKeys.get(signer);
  if (!key) {
    key = createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: "der", type: "spki" });
    signerKeys.set(signer, key);
  }
  return key;
}

export function serializeTbs(tbs: TBSCertificate): Uint8Array {
  return new Uint8Array(AsnConvert.serialize(tbs));
}

export function verifySignature(spki: Uint8Array, keyType: Signer["keyType"], data: Uint8Array, sig: Uint8Array): boolean {
  return cryptoVerify(SIGNATURE_SCHEMES[keyType].hash, data, verifyKey(spki), sig);
}

/**
 * The same check on libuv's thread pool: hashing a CRL of tens of megabytes would otherwise hold
 * the event loop (and every OCSP request behind it) for as long.
 */
export async function verifySignatureAsync(spki: Uint8Array, keyType: Signer["keyType"], data: Uint8Array, sig: Uint8Array): Promise<boolean> {
  const hash = SIGNATURE_SCHEMES[keyType].hash;
  if (hash && data.length > LARGE_INPUT_OCTETS) {
    const v = createVerify(hash);
    await updateInSlices(v, data);
    return v.verify(verifyKey(spki), sig);
  }
  return new Promise((resolve, reject) =>
    cryptoVerify(SIGNATURE_SCHEMES[keyType].hash, data, verifyKey(spki), sig, (err, ok) => (err ? reject(err) : resolve(ok))),
  );
}

function verifyKey(spki: Uint8Array) {
  return verifyOptions(createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }));
}

/** RSA signatures here are PKCS#1 v1.5 (RFC 4055 §5); ECDSA ones the DER Ecdsa-Sig-Value (RFC 3279 §2.2.3). */
function verifyOptions(key: KeyObject) {
  return key.asymmetricKeyType === "rsa" ? { key, padding: constants.RSA_PKCS1_PADDING } : { key, dsaEncoding: "der" as const };
}
