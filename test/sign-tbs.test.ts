/**
 * Verify-after-sign with the issuer's public key imported once (sign-tbs.ts): the KeyObject is
 * made once per Signer and reused, and a signer whose signature does not verify still never
 * yields a certificate.
 */
import { createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { CA_KEY_TYPES, SIGNATURE_SCHEMES } from "../src/core/key-type.js";
import { generateEphemeralSigner } from "../src/signing/soft-keystore.js";
import { describe, expect, it } from "vitest";
import { signerPublicKey, signTbs } from "../src/issuance/sign-tbs.js";
import type { Signer } from "../src/signing/signer.js";
import { derSequence, derSmallUint } from "../src/x509/der.js";

function p256Signer(fault = false): Signer {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    keyType: "ecdsa-p256",
    publicKeySpki: new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
    async sign(data) {
      const sig = new Uint8Array(sign("sha256", data, { key: privateKey, dsaEncoding: "der" }));
      if (fault) sig[sig.length - 1] = sig[sig.length - 1]! ^ 1;
      return sig;
    },
  };
}

describe("signTbs", () => {
  const tbs = derSequence(derSmallUint(1), derSmallUint(2));

  it("imports the signer's public key once and reuses it", async () => {
    const signer = p256Signer();
    const key = signerPublicKey(signer);
    expect(signerPublicKey(signer)).toBe(key);
    for (let i = 0; i < 3; i++) expect((await signTbs(signer, tbs)).length).toBeGreaterThan(tbs.length);
    expect(signerPublicKey(signer)).toBe(key);
    expect(signerPublicKey(p256Signer())).not.toBe(key);
  });

  it("refuses a signature that does not verify", async () => {
    await expect(signTbs(p256Signer(true), tbs)).rejects.toThrow(/does not verify/);
  });
});

describe("Signer.signOnThisThread (the soft keystore's synchronous form)", () => {
  it("makes the same kind of signature as sign(), for every CA key type, and refuses a large input", async () => {
    const data = derSequence(derSmallUint(7), derSmallUint(8));
    for (const keyType of CA_KEY_TYPES) {
      const signer = await generateEphemeralSigner(keyType);
      const key = createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: "der", type: "spki" });
      const hash = SIGNATURE_SCHEMES[keyType].hash;
      const onThread = signer.signOnThisThread!(data);
      expect(verify(hash, data, key, onThread), keyType).toBe(true);
      expect(verify(hash, data, key, await signer.sign(data)), keyType).toBe(true);
      // A bit flipped in the data: the signature is over exactly these bytes.
      const other = Uint8Array.from(data);
      other[other.length - 1]! ^= 1;
      expect(verify(hash, other, key, onThread), keyType).toBe(false);
    }
    const p256 = await generateEphemeralSigner("ecdsa-p256");
    expect(() => p256.signOnThisThread!(new Uint8Array(2 * 1024 * 1024))).toThrow(/small inputs/);
  });
});
