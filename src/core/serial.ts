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

/**
 * A serial as an operator or client types it: any case, colons allowed (as browsers show them),
 * an optional "serial=" prefix (as `openssl x509 -serial` prints it). Null when it is not one.
 */
export function normaliseSerial(text: string): SerialHex | null {
  const s = text.trim().toLowerCase().replace(/^serial=/, "").replace(/:/g, "");
  return isSerialHex(s) ? s : null;
}
