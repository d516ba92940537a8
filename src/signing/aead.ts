import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/** One AES-256-GCM sealed value as stored in JSON (base64 fields). */
export interface SealedBox {
  iv: string;
  ct: string;
  tag: string;
}

/** AES-256-GCM with a fresh 96-bit IV (NIST SP 800-38D §8.2.2) and associated data binding context. */
export function seal(key: Uint8Array, plaintext: Uint8Array, aad: string): SealedBox {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(Buffer.from(aad, "utf8"));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return { iv: iv.toString("base64"), ct: ct.toString("base64"), tag: c.getAuthTag().toString("base64") };
}

/** Returns null when the key or the associated data is wrong (the GCM tag does not verify). */
export function open(key: Uint8Array, box: SealedBox, aad: string): Buffer | null {
  try {
    const d = createDecipheriv("aes-256-gcm", key, Buffer.from(box.iv, "base64"));
    d.setAAD(Buffer.from(aad, "utf8"));
    d.setAuthTag(Buffer.from(box.tag, "base64"));
    return Buffer.concat([d.update(Buffer.from(box.ct, "base64")), d.final()]);
  } catch {
    return null;
  }
}
