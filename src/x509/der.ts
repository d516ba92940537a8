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

/** Octets of a definite, shortest-form length header for `n` content octets, tag excluded. */
function lengthOctets(n: number): number {
  if (n < 0x80) return 1;
  let k = 1;
  for (let v = n; v > 0xff; v = Math.floor(v / 256)) k++;
  return 1 + k;
}

/**
 * Tag, length and the parts' octets in one allocation: this runs for every OCSP answer signed
 * on request and every certificate, and copying each level twice (parts, then header + parts)
 * was a measurable share of an answer.
 */
function tlvOf(tag: number, parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const h = lengthOctets(n);
  const out = Buffer.allocUnsafe(1 + h + n);
  out[0] = tag;
  if (h === 1) out[1] = n;
  else {
    out[1] = 0x80 | (h - 1);
    for (let i = h, v = n; i >= 2; i--, v = Math.floor(v / 256)) out[i] = v & 0xff;
  }
  let at = 1 + h;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function derTlv(tag: number, content: Uint8Array): Uint8Array {
  return tlvOf(tag, [content]);
}

export function derSequence(...parts: Uint8Array[]): Uint8Array {
  return tlvOf(0x30, parts);
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

/** A length header for `tag` around `n` content octets (X.690 §8.1.3, definite, shortest form). */
export function derHeader(tag: number, n: number): Uint8Array {
  const len = derLength(n);
  const h = new Uint8Array(1 + len.length);
  h[0] = tag;
  h.set(len, 1);
  return h;
}

/**
 * Time as RFC 5280 §4.1.2.5 / §5.1.2.4 require: UTCTime (YYMMDDHHMMSSZ) through 2049,
 * GeneralizedTime (YYYYMMDDHHMMSSZ) from 2050, whole seconds, always "Z".
 */
export function derTime(d: Date): Uint8Array {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  const digits = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + "Z";
  const year = d.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new RangeError(`time ${iso} cannot be encoded`);
  return year < 2050 ? derTlv(0x17, Buffer.from(digits.slice(2), "latin1")) : derTlv(0x18, Buffer.from(digits, "latin1"));
}

/** INTEGER from the magnitude's big-endian octets: a leading 0 when the top bit is set (X.690 §8.3). */
export function derUnsignedInteger(magnitude: Uint8Array): Uint8Array {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return m.length > 0 && m[0]! & 0x80 ? derTlv(0x02, Buffer.concat([Uint8Array.of(0), m])) : derTlv(0x02, m.length ? m : Uint8Array.of(0));
}

/** INTEGER of a non-negative safe integer (CRL numbers, versions). */
export function derSmallUint(n: number, tag = 0x02): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a non-negative integer: ${n}`);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  if (bytes.length === 0 || bytes[0]! & 0x80) bytes.unshift(0);
  return derTlv(tag, Uint8Array.from(bytes));
}

/** OBJECT IDENTIFIER from its dotted form (X.690 §8.19). */
export function derOid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map(Number);
  const out: number[] = [];
  const push = (v: number) => {
    const groups: number[] = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) groups.unshift(0x80 | (v & 0x7f));
    out.push(...groups);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return derTlv(0x06, Uint8Array.from(out));
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } (RFC 5280 §4.1). */
export function derExtension(oid: string, critical: boolean, valueDer: Uint8Array): Uint8Array {
  return derSequence(derOid(oid), ...(critical ? [Uint8Array.of(0x01, 0x01, 0xff)] : []), derTlv(0x04, valueDer));
}
