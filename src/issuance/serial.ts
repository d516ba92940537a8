import { randomBytes } from "node:crypto";

/**
 * 128 random bits as a positive DER INTEGER (RFC 5280 §4.1.2.2, CA/B BRs §7.1 ask for ≥ 64 bits of
 * CSPRNG output). The magnitude is always 16 octets with a non-zero first octet, so the hex form
 * is always 32 digits; a 00 sign octet is prepended when the top bit is set.
 */
export function randomSerialContent(): Uint8Array {
  for (;;) {
    const b = randomBytes(16);
    if (b[0] === 0) continue;
    return b[0]! & 0x80 ? Buffer.concat([Buffer.of(0), b]) : b;
  }
}
