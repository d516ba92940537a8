/**
 * A cursor over DER (X.690 §8, §10) that reads one TLV at a time and allocates nothing but the
 * views it returns. It has no node cap and no object model, so a structure of a million elements
 * (a large CRL) is walked in linear time and constant extra memory; and it is cheap enough for the
 * hot path (an OCSP request is a few TLVs). Only what DER allows is accepted: single-octet tags
 * (fleetca reads no high-tag-number forms), definite lengths in the shortest form, no length past
 * the end of the enclosing value.
 */

export class DerError extends Error {}

export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number). */
  tag: number;
  /** Offset of the identifier octet in the underlying buffer. */
  start: number;
  /** Offset of the first content octet. */
  contentStart: number;
  /** Offset just past the last content octet. */
  end: number;
}

export class DerReader {
  #pos: number;

  /** Reads `buf` from `start` up to (not including) `end`. */
  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    if (start < 0 || end > buf.length || start > end) throw new DerError("bad DER bounds");
    this.#pos = start;
  }

  get position(): number {
    return this.#pos;
  }

  get done(): boolean {
    return this.#pos >= this.end;
  }

  /** The tag of the next TLV without consuming it, or -1 at the end. */
  peekTag(): number {
    return this.#pos < this.end ? this.buf[this.#pos]! : -1;
  }

  /** Reads the next TLV header and skips over its content. */
  next(): Tlv {
    const start = this.#pos;
    if (start + 2 > this.end) throw new DerError(`truncated TLV at ${start}`);
    const tag = this.buf[start]!;
    if ((tag & 0x1f) === 0x1f) throw new DerError(`high tag number form at ${start}`);
    let len = this.buf[start + 1]!;
    let contentStart = start + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      // X.690 §10.1: DER lengths are definite and minimal; 4 octets cover 4 GiB, more than we hold.
      if (n === 0 || n > 4) throw new DerError(`unsupported length form at ${start}`);
      if (contentStart + n > this.end) throw new DerError(`truncated length at ${start}`);
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + this.buf[contentStart + i]!;
      if (this.buf[contentStart] === 0 || len < 0x80) throw new DerError(`non-minimal length at ${start}`);
      contentStart += n;
    }
    const end = contentStart + len;
    if (end > this.end) throw new DerError(`length past the end of the enclosing value at ${start}`);
    this.#pos = end;
    return { tag, start, contentStart, end };
  }

  /** Reads the next TLV and checks its tag. */
  expect(tag: number, what: string): Tlv {
    const t = this.next();
    if (t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)} at ${t.start}`);
    return t;
  }

  /** Reads the next TLV only when it has this tag; otherwise leaves the cursor where it is. */
  optional(tag: number): Tlv | null {
    return this.peekTag() === tag ? this.next() : null;
  }

  /** A reader over a constructed TLV's content. */
  inside(t: Tlv): DerReader {
    if (!(t.tag & 0x20)) throw new DerError(`tag 0x${t.tag.toString(16)} at ${t.start} is not constructed`);
    return new DerReader(this.buf, t.contentStart, t.end);
  }

  /** Checks nothing is left. */
  finish(what: string): void {
    if (this.#pos !== this.end) throw new DerError(`${what}: ${this.end - this.#pos} unexpected trailing octets at ${this.#pos}`);
  }

  content(t: Tlv): Uint8Array {
    return this.buf.subarray(t.contentStart, t.end);
  }

  whole(t: Tlv): Uint8Array {
    return this.buf.subarray(t.start, t.end);
  }
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** A context-specific tag [n]; constructed unless said otherwise (X.690 §8.1.2). */
export function contextTag(n: number, constructed = true): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

/**
 * A non-negative INTEGER's content as a JS number (CRL numbers, enumerations, versions). Throws
 * for a negative, non-minimal or larger-than-2^53 value: those never come from fleetca.
 */
export function readSmallUint(content: Uint8Array): number {
  if (content.length === 0) throw new DerError("empty INTEGER");
  if (content[0]! & 0x80) throw new DerError("negative INTEGER");
  if (content.length > 1 && content[0] === 0 && !(content[1]! & 0x80)) throw new DerError("non-minimal INTEGER");
  if (content.length > 8) throw new DerError("INTEGER too large");
  let v = 0;
  for (const b of content) v = v * 256 + b;
  if (!Number.isSafeInteger(v)) throw new DerError("INTEGER too large");
  return v;
}

/** UTCTime / GeneralizedTime as RFC 5280 §4.1.2.5 profiles them: whole seconds, "Z". */
export function readTime(tag: number, content: Uint8Array): Date {
  return new Date(readTimeSeconds(tag, content, 0, content.length) * 1000);
}

/**
 * The same, as seconds since the epoch, read from `buf[start, end)` digit by digit: a CRL walk
 * reads a million of these and needs neither a regular expression nor a Date for each.
 */
export function readTimeSeconds(tag: number, buf: Uint8Array, start: number, end: number): number {
  const utc = tag === TAG.UTC_TIME;
  const n = end - start;
  if (!(utc ? n === 13 : tag === TAG.GENERALIZED_TIME && n === 15) || buf[end - 1] !== 0x5a) {
    throw new DerError(`bad time ${JSON.stringify(Buffer.from(buf.subarray(start, Math.min(end, start + 20))).toString("latin1"))}`);
  }
  let o = start;
  let year: number;
  if (utc) {
    // §4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
    const yy = twoDigits(buf, o);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    o += 2;
  } else {
    year = twoDigits(buf, o) * 100 + twoDigits(buf, o + 2);
    o += 4;
  }
  const month = twoDigits(buf, o);
  const day = twoDigits(buf, o + 2);
  const hour = twoDigits(buf, o + 4);
  const minute = twoDigits(buf, o + 6);
  const second = twoDigits(buf, o + 8);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) throw new DerError("bad time: out of range");
  return Date.UTC(year, month - 1, day, hour, minute, second) / 1000;
}

function twoDigits(buf: Uint8Array, i: number): number {
  const hi = buf[i]! - 0x30;
  const lo = buf[i + 1]! - 0x30;
  if (hi < 0 || hi > 9 || lo < 0 || lo > 9) throw new DerError("bad time: not a digit");
  return hi * 10 + lo;
}

/** The dotted form of an OBJECT IDENTIFIER's content (X.690 §8.19). */
export function readOid(content: Uint8Array): string {
  const arcs: number[] = [];
  let v = 0;
  for (const b of content) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  if (content.length === 0 || content[content.length - 1]! & 0x80) throw new DerError("truncated OID");
  const first = arcs.shift()!;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...arcs].join(".");
}
