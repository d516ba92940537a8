/**
 * Certificate serial numbers as SPEC.md shows them: lower-case hex, no separators, as
 * `openssl x509 -serial` prints them (which keeps a leading 00 only when needed to stay positive).
 */
export type SerialHex = string & { readonly __brand: "SerialHex" };

export function serialFromBytes(bytes: Uint8Array): SerialHex {
  return Buffer.from(bytes).toString("hex") as SerialHex;
}

export function isSerialHex(text: string): text is SerialHex {
  return /^[0-9a-f]{2,40}$/.test(text) && text.length % 2 === 0;
}
