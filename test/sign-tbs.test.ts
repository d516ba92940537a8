/**
 * Verify-after-sign with the issuer's public key imported once (sign-tbs.ts): the KeyObject is
 * made once per Signer and reused, and a signer whose signature does not verify still never
 * yields a certificate.
 */
import { generateKeyPairSync, sign } from "node:crypto";
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
