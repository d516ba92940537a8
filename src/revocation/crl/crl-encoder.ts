import { createHash, type Hash } from "node:crypto";
import { CRL_REASONS } from "../../core/revocation-reason.js";
import type { RevokedPage } from "../../storage/ports.js";
import { NO_REASON, PACKED_ENTRY_FIXED_OCTETS } from "../../storage/revoked-page.js";
import { derExtension, derHeader, derSequence, derSmallUint, derTime, derTlv } from "../../x509/der.js";
import { OID } from "../../x509/oids.js";

/** RFC 5280 §5.2.5 issuingDistributionPoint. */
export const OID_ISSUING_DISTRIBUTION_POINT = "2.5.29.28";

/**
 * One entry is at most 2 (SEQUENCE header) + 23 (INTEGER of a 20-octet serial with its sign
 * octet) + 17 (GeneralizedTime) + 14 (the reasonCode extension) = 56 octets: short-form lengths
 * inside, so every entry is written in place with no intermediate objects.
 */
const MAX_ENTRY_OCTETS = 56;
/** A 16-octet serial, UTCTime and a reason code: what sizes the buffer for an expected count. */
const TYPICAL_ENTRY_OCTETS = 48;
/** When the size hint was short, the buffer grows by at least this much (see #reserve). */
const MIN_GROWTH = 1 << 20;
/** By reason octet: 1 for a code an entry may carry (RFC 5280 §5.3.1; 7 is unused), and for none. */
const REASON_OK = new Uint8Array(256);
for (const r of Object.values(CRL_REASONS)) REASON_OK[r] = 1;
REASON_OK[NO_REASON] = 1;
/** The reasonCode entry extension minus its last octet (the code): Extensions { Extension { id, OCTET STRING { ENUMERATED } } }. */
export const REASON_EXTENSIONS_PREFIX = Buffer.from([0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01]);

/**
 * What a CRL's entries say, as a digest: serial magnitude, revocation second and reason (none
 * for unspecified) of every entry in order. The builder computes it from the database rows it
 * encodes; the structural walk (crl-walk.ts) recomputes it from the signed bytes, so the two
 * meeting proves the CRL lists exactly what the database said, without a second object model.
 * Each entry is hashed as the RevokedPage record (storage/ports.ts): magnitude length (1 octet),
 * magnitude, seconds (8 octets, big-endian two's complement), reason (1 octet, 0xff for none,
 * which unspecified also reads as), so the builder hashes the store's pages as they come
 * (update) while the walk adds entry by entry, batched into one update per 64 KiB.
 */
export class EntriesDigest {
  readonly #hash: Hash = createHash("sha256");
  readonly #scratch = Buffer.allocUnsafe(65_536);
  #used = 0;

  /** `source[start, end)` holds the serial's magnitude (no sign octet). */
  add(source: Uint8Array, start: number, end: number, revokedAtSeconds: number, reason: number | null): void {
    const n = end - start;
    if (this.#used + n + 10 > this.#scratch.length) this.#flush();
    const s = this.#scratch;
    s[this.#used++] = n;
    // A byte loop: a serial is ~16 octets, and a subarray view per entry would cost more.
    let u = this.#used;
    for (let i = start; i < end; i++) s[u++] = source[i]!;
    // Big-endian two's complement in octets: no method call per entry.
    const hi = Math.floor(revokedAtSeconds / 4_294_967_296);
    const lo = revokedAtSeconds - hi * 4_294_967_296;
    s[u] = hi >>> 24;
    s[u + 1] = hi >>> 16;
    s[u + 2] = hi >>> 8;
    s[u + 3] = hi;
    s[u + 4] = lo >>> 24;
    s[u + 5] = lo >>> 16;
    s[u + 6] = lo >>> 8;
    s[u + 7] = lo;
    s[u + 8] = reason === null || reason === CRL_REASONS.unspecified ? NO_REASON : reason;
    this.#used = u + 9;
  }

  /** Records already in the record format (a RevokedPage's bytes, reasons normalised). */
  update(records: Uint8Array): void {
    this.#flush();
    this.#hash.update(records);
  }

  hex(): string {
    this.#flush();
    return this.#hash.copy().digest("hex");
  }

  #flush(): void {
    this.#hash.update(this.#scratch.subarray(0, this.#used));
    this.#used = 0;
  }
}

/** Room for a SEQUENCE header of up to 4 GiB (X.690 §8.1.3.5: 1 + 1 + 4 octets). */
const HEADER_ROOM = 6;

/**
 * Writes a TBSCertList (RFC 5280 §5.1.2) whose revokedCertificates list (§5.1.2.6) arrives page
 * by page in the order the store reads it (ascending serial), straight into one buffer: the
 * fields before the list are known up front and the length headers are filled in backwards at
 * the end, so the entries (~40 octets each, tens of megabytes for a big CRL) are written once
 * and never copied, and `roomAfter` octets stay free after the TBS for the signature fields.
 * Pages come packed (RevokedPage): each entry is read from the page's bytes, with no string or
 * object per entry. Lints every entry as it goes: serial shape, strictly ascending (no serial
 * listed twice), a known reason code.
 */
export class CrlWriter {
  readonly digest = new EntriesDigest();
  #buf: Buffer;
  readonly #head: readonly Uint8Array[];
  readonly #headLength: number;
  readonly #entriesStart: number;
  #o: number;
  #count = 0;
  #last: string | null = null;
  /** Where the last entry's serial magnitude sits in #buf, for the order check. */
  #lastSerialAt = 0;
  #lastSerialLength = 0;

  /** `head`: version, signature, issuer, thisUpdate, nextUpdate, already encoded; `expectedEntries` sizes the buffer. */
  constructor(head: readonly Uint8Array[], expectedEntries: number) {
    this.#head = head;
    this.#headLength = head.reduce((n, p) => n + p.length, 0);
    // Outer CertificateList header, TBS header, the head fields, the list header.
    this.#entriesStart = HEADER_ROOM + HEADER_ROOM + this.#headLength + HEADER_ROOM;
    this.#o = this.#entriesStart;
    this.#buf = Buffer.allocUnsafe(this.#entriesStart + Math.max(64, Math.ceil(expectedEntries * 1.05)) * TYPICAL_ENTRY_OCTETS);
  }

  get count(): number {
    return this.#count;
  }

  /** The serial the next page starts after (keyset pagination), or null before the first. */
  get lastSerial(): string | null {
    return this.#last;
  }

  /**
   * Encodes one page. Its reason octets are normalised in place (unspecified reads as none, as
   * it is written: §5.3.1) and the page is then hashed whole into the digest.
   */
  addPage(page: RevokedPage): void {
    const src = page.bytes;
    const end = src.length;
    this.#reserve(page.count * MAX_ENTRY_OCTETS);
    const buf = this.#buf;
    let o = this.#o;
    let p = 0;
    let prevAt = this.#lastSerialAt;
    let prevLength = this.#count > 0 ? this.#lastSerialLength : 0;
    for (let k = 0; k < page.count; k++) {
      const n = src[p]!;
      const s = p + 1;
      const fixed = s + n;
      // 1–20 octets (§4.1.2.2), minimal: a leading 00 octet only for the serial 0 itself.
      // (Negated: past the page's end n is undefined, and must fail too.)
      if (!(n >= 1 && n <= 20) || fixed + PACKED_ENTRY_FIXED_OCTETS - 1 > end || (n > 1 && src[s] === 0)) throw new Error(`bad serial ${badSerial(src, s, n, end)}`);
      // Strictly ascending, so no serial is listed twice and the next page resumes exactly after
      // this one: octet order, a shorter prefix first, which is the store's (hex string) order.
      // (Inline, as the rest of this loop: a daemon's first CRL runs it before V8 optimised it.)
      if (prevLength > 0) {
        const common = n < prevLength ? n : prevLength;
        let d = 0;
        for (let i = 0; i < common && d === 0; i++) d = src[s + i]! - buf[prevAt + i]!;
        if (d < 0 || (d === 0 && n <= prevLength)) throw new Error(`serial ${hexOf(src, s, n)} out of order or listed twice`);
      }
      const seconds = ((src[fixed]! << 24) | (src[fixed + 1]! << 16) | (src[fixed + 2]! << 8) | src[fixed + 3]!) * 4_294_967_296 +
        ((src[fixed + 4]! << 24) >>> 0) + ((src[fixed + 5]! << 16) | (src[fixed + 6]! << 8) | src[fixed + 7]!);
      let reason = src[fixed + 8]!;
      // §5.3.1: "the reason code CRL entry extension SHOULD be absent instead of using the
      // unspecified (0) reasonCode value".
      if (reason === CRL_REASONS.unspecified) reason = src[fixed + 8] = NO_REASON;
      if (!REASON_OK[reason]) throw new Error(`bad reason ${reason} for ${hexOf(src, s, n)}`);

      const start = o;
      o += 2; // the entry's SEQUENCE header, filled in below
      // userCertificate: a positive INTEGER (§4.1.2.2); a 00 octet when the top bit is set.
      const pad = src[s]! >= 0x80 ? 1 : 0;
      buf[o++] = 0x02;
      buf[o++] = n + pad;
      if (pad) buf[o++] = 0;
      prevAt = o;
      prevLength = n;
      // A byte loop: a serial is ~16 octets, and a copy call per entry would cost more.
      for (let i = s; i < fixed; i++) buf[o++] = src[i]!;
      // revocationDate: UTCTime through 2049, GeneralizedTime from 2050 (§5.1.2.6 → §4.1.2.5);
      // the date part once per day seen (setLastDate), the clock here.
      const days = Math.floor(seconds / 86_400);
      if (days !== lastDate.days) setLastDate(days);
      buf[o++] = lastDate.utc ? 0x17 : 0x18;
      buf[o++] = lastDate.utc ? 13 : 15;
      const date = lastDate.octets;
      for (let i = 0; i < lastDate.length; i++) buf[o++] = date[i]!;
      const secs = seconds - days * 86_400;
      const hour = Math.floor(secs / 3600);
      const minute = Math.floor((secs - hour * 3600) / 60);
      const second = secs - hour * 3600 - minute * 60;
      buf[o] = 0x30 + Math.floor(hour / 10);
      buf[o + 1] = 0x30 + (hour % 10);
      buf[o + 2] = 0x30 + Math.floor(minute / 10);
      buf[o + 3] = 0x30 + (minute % 10);
      buf[o + 4] = 0x30 + Math.floor(second / 10);
      buf[o + 5] = 0x30 + (second % 10);
      buf[o + 6] = 0x5a; // "Z"
      o += 7;
      if (reason !== NO_REASON) {
        // A byte loop, not Buffer#copy: 13 octets are less than the call costs.
        for (let i = 0; i < REASON_EXTENSIONS_PREFIX.length; i++) buf[o++] = REASON_EXTENSIONS_PREFIX[i]!;
        buf[o++] = reason;
      }
      buf[start] = 0x30;
      buf[start + 1] = o - start - 2;
      p = fixed + 9;
    }
    if (p !== end) throw new Error(`a page of ${page.count} entries holds ${end} octets, not ${p}`);
    if (page.count > 0) {
      // The store resumes after lastSerial: one that is not this page's last entry would skip
      // entries (or repeat them, which the order check would catch).
      const last = hexOf(buf, prevAt, prevLength);
      if (page.lastSerial !== last) throw new Error(`page ends at ${last} but the store says ${page.lastSerial}`);
      this.#last = last;
    }
    this.digest.update(src);
    this.#lastSerialAt = prevAt;
    this.#lastSerialLength = prevLength;
    this.#count += page.count;
    this.#o = o;
  }

  /**
   * Appends `tail` (the crlExtensions), fills in the headers before the entries, and returns the
   * buffer with the TBS at [tbsStart, tbsEnd): at least HEADER_ROOM octets free before it and
   * `roomAfter` after it. "When there are no revoked certificates, the revoked certificates list
   * MUST be absent" (§5.1.2.6), so an empty list gets no header at all.
   */
  finish(tail: readonly Uint8Array[], roomAfter: number): { buf: Buffer; tbsStart: number; tbsEnd: number } {
    const tailLength = tail.reduce((n, p) => n + p.length, 0);
    this.#reserve(tailLength + roomAfter);
    const buf = this.#buf;
    const entriesLength = this.#o - this.#entriesStart;
    let o = this.#o;
    for (const p of tail) {
      buf.set(p, o);
      o += p.length;
    }
    const tbsEnd = o;
    let at = this.#entriesStart;
    if (this.#count > 0) {
      const listHeader = derHeader(0x30, entriesLength);
      at -= listHeader.length;
      buf.set(listHeader, at);
    }
    at -= this.#headLength;
    let h = at;
    for (const p of this.#head) {
      buf.set(p, h);
      h += p.length;
    }
    const tbsHeader = derHeader(0x30, tbsEnd - at);
    at -= tbsHeader.length;
    buf.set(tbsHeader, at);
    return { buf, tbsStart: at, tbsEnd };
  }

  /**
   * Grows (doubling, and by at least MIN_GROWTH) only when the size hint was short, e.g. the
   * first CRL after many revocations: few copies, and few fresh pages to fault in, which on a
   * busy VM cost more than the copying (measured: ~45 ms of a 100,000-entry build at 1.5×).
   */
  #reserve(n: number): void {
    if (this.#o + n <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#o + n + MIN_GROWTH));
    this.#buf.copy(grown, 0, 0, this.#o);
    this.#buf = grown;
  }
}

function hexOf(b: Uint8Array, start: number, n: number): string {
  return Buffer.from(b.buffer, b.byteOffset + start, n).toString("hex");
}

/** A bad entry's serial for the error message, as far as the page holds it. */
function badSerial(src: Uint8Array, s: number, n: number | undefined, end: number): string {
  if (n === undefined || s > end) return "(past the end of the page)";
  return n >= 1 && n <= 20 ? hexOf(src, s, Math.min(n, end - s)) : "(not 1–20 octets of hex)";
}

/**
 * The date part of the last time written: a CRL's entries share few revocation days, so the
 * calendar arithmetic runs once per day seen, not once per entry.
 */
const lastDate = { days: Number.NaN, utc: true, octets: new Uint8Array(8), length: 0 };

/** YYMMDD (UTCTime) or YYYYMMDD (GeneralizedTime) of a day since the epoch, into lastDate. */
function setLastDate(days: number): void {
  // Calendar fields by integer arithmetic (days → civil date, H. Hinnant's algorithm): no Date
  // object on a path that writes a million times.
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  if (year < 1950 || year > 9999) throw new RangeError(`revocation time in day ${days} cannot be encoded`);
  const utc = year < 2050;
  const d = lastDate.octets;
  let o = 0;
  if (!utc) o = twoInto(d, o, Math.floor(year / 100));
  o = twoInto(d, o, year % 100);
  o = twoInto(d, o, month);
  o = twoInto(d, o, day);
  lastDate.days = days;
  lastDate.utc = utc;
  lastDate.length = o;
}

function twoInto(d: Uint8Array, o: number, v: number): number {
  d[o] = 0x30 + Math.floor(v / 10);
  d[o + 1] = 0x30 + (v % 10);
  return o + 2;
}

export interface CrlHeader {
  /** DER AlgorithmIdentifier of the issuer's signature scheme. */
  signatureAlgorithmDer: Uint8Array;
  /** DER Name: the issuer's subject, byte for byte, so relying parties match it (§5.1.2.3). */
  issuerNameDer: Uint8Array;
  authorityKeyId: Uint8Array;
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  /** A partition's own URL for its critical IssuingDistributionPoint (§5.2.5); null for a full CRL. */
  distributionPointUrl: string | null;
}

/** The TBSCertList fields before the revoked list: version v2 (it has extensions), signature, issuer, thisUpdate, nextUpdate. */
export function crlHeadFields(h: CrlHeader): Uint8Array[] {
  return [derSmallUint(1), h.signatureAlgorithmDer, h.issuerNameDer, derTime(h.thisUpdate), derTime(h.nextUpdate)];
}

/**
 * crlExtensions [0]: AKI (§5.2.1) and CRL number (§5.2.3), non-critical, and for a partition the
 * IDP, critical (§5.2.5 "this extension MUST be critical"), so a relying party cannot take one
 * partition for the whole list or for another partition.
 */
export function crlExtensionsField(h: CrlHeader): Uint8Array {
  const extensions = [
    derExtension(OID.authorityKeyIdentifier, false, derSequence(derTlv(0x80, h.authorityKeyId))),
    derExtension(OID.cRLNumber, false, derSmallUint(h.crlNumber)),
    ...(h.distributionPointUrl === null ? [] : [derExtension(OID_ISSUING_DISTRIBUTION_POINT, true, issuingDistributionPoint(h.distributionPointUrl))]),
  ];
  return derTlv(0xa0, derSequence(...extensions));
}

/**
 * IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] { fullName [0] { URI [6] } },
 * onlyContainsUserCerts [1] TRUE } — the same DistributionPointName the certificates' CRL
 * distribution point carries, which is what lets a relying party match the two (§6.3.3 (b)(2)).
 */
function issuingDistributionPoint(url: string): Uint8Array {
  return derSequence(derTlv(0xa0, derTlv(0xa0, derTlv(0x86, Buffer.from(url, "latin1")))), Uint8Array.of(0x81, 0x01, 0xff));
}
