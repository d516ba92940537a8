import {
  generateKeyPair,
  createSign,
  sign as cryptoSign,
  type KeyObject,
} from "node:crypto";
import { promisify } from "node:util";
import { SIGNATURE_SCHEMES, type CaKeyType } from "../core/key-type.js";
import { LARGE_INPUT_OCTETS, updateInSlices } from "./digest-in-slices.js";
import type { Signer } from "./signer.js";

const generateKeyPairAsync = promisify(generateKeyPair);

export function generateKeyPairFor(keyType: CaKeyType): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  switch (keyType) {
    case "ecdsa-p256":
      return generateKeyPairAsync("ec", { namedCurve: "P-256" });
    case "ecdsa-p384":
      return generateKeyPairAsync("ec", { namedCurve: "P-384" });
    case "ed25519":
      return generateKeyPairAsync("ed25519");
    case "rsa-3072":
      return generateKeyPairAsync("rsa", { modulusLength: 3072, publicExponent: 65537 });
    case "rsa-4096":
      return generateKeyPairAsync("rsa", { modulusLength: 4096, publicExponent: 65537 });
  }
}

/**
 * Generates a key that lives only in memory (the API listener's own serving key): never written.
 */
export async function generateEphemeralSigner(keyType: CaKeyType): Promise<Signer & { privateKeyPem(): string }> {
  const { privateKey, publicKey } = await generateKeyPairFor(keyType);
  const spki = publicKey.export({ type: "spki", format: "der" });
  return new EphemeralSigner(keyType, spki, privateKey);
}

export class SoftSigner implements Signer {
  readonly #key: KeyObject;
  constructor(
    readonly keyType: CaKeyType,
    readonly publicKeySpki: Uint8Array,
    key: KeyObject,
  ) {
    this.#key = key;
  }
  async sign(data: Uint8Array): Promise<Uint8Array> {
    const hash = SIGNATURE_SCHEMES[this.keyType].hash;
    if (hash && data.length > LARGE_INPUT_OCTETS) {
      // A big CRL: hashed in slices on the event loop, then only the digest is signed.
      const s = createSign(hash);
      await updateInSlices(s, data);
      return s.sign(this.#key);
    }
    // The callback form runs in libuv's thread pool, off the event loop.
    return new Promise((resolve, reject) =>
      cryptoSign(hash, data, this.#key, (err, sig) => (err ? reject(err) : resolve(sig))),
    );
  }
  signOnThisThread(data: Uint8Array): Uint8Array {
    if (data.length > LARGE_INPUT_OCTETS) throw new Error("signOnThisThread is for small inputs; use sign()");
    return cryptoSign(SIGNATURE_SCHEMES[this.keyType].hash, data, this.#key);
  }
  toJSON(): string {
    return `[Signer ${this.keyType}]`;
  }
}

/**
 * The serving key of the HTTPS listener must be handed to node:tls as PEM; this is the one
 * place key bytes leave src/signing, and only for a key that never touches disk.
 */
class EphemeralSigner extends SoftSigner {
  readonly #pem: string;
  constructor(keyType: CaKeyType, spki: Uint8Array, key: KeyObject) {
    super(keyType, spki, key);
    this.#pem = key.export({ type: "pkcs8", format: "pem" }) as string;
  }
  privateKeyPem(): string {
    return this.#pem;
  }
}
