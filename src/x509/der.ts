/**
 * The few DER encodings fleetca assembles by hand (X.690 §8.1.3 lengths, §8.6 BIT STRING,
 * §8.9 SEQUENCE): the outer Certificate around a signed TBS, so the bytes signed are exactly
 * the bytes shipped, with no re-encoding in between.
 */
export function derLength(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

export function derTlv(tag: number, content: Uint8Array): Uint8Array {
  return Buffer.concat([Uint8Array.of(tag), derLength(content.length), content]);
}

export function derSequence(...parts: Uint8Array[]): Uint8Array {
  return derTlv(0x30, Buffer.concat(parts));
}

/** A BIT STRING of whole octets: a leading 0 "unused bits" octet, then the bytes. */
export function derBitString(bytes: Uint8Array): Uint8Array {
  return derTlv(0x03, Buffer.concat([Uint8Array.of(0), bytes]));
}

/** Length of the outermost TLV at the start of `der`, or -1 when the header is malformed. */
export function derOuterLength(der: Uint8Array): number {
  if (der.length < 2) return -1;
  const first = der[1]!;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  if (n === 0 || n > 4 || der.length < 2 + n) return -1;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[2 + i]!;
  return 2 + n + len;
}
