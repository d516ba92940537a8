import { createHash, type Hash } from "node:crypto";
import { CRL_REASONS } from "../../core/revocation-reason.js";
import type { RevokedRow } from "../../storage/ports.js";
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
const VALID_REASONS = new Set<number>(Object.values(CRL_REASONS));
/** The reasonCode entry extension minus its last octet (the code): Extensions { Extension { id, OCTET STRING { ENUMERATED } } }. */
export const REASON_EXTENSIONS_PREFIX = Buffer.from([0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01]);

/**
 * What a CRL's entries say, as a digest: serial magnitude, revocation second and reason (none
 * for unspecified) of every entry in order. The builder computes it from the database rows it
 * encodes; the structural walk (crl-walk.ts) recomputes it from the signed bytes, so the two
 * meeting proves the CRL lists exactly what the database said, without a second object model.
 * Each entry is hashed as: magnitude length (1 octet), magnitude, seconds (8 octets, big-endian
 * double), reason (1 octet, 0xff for none); batched into one update per 64 KiB.
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
    for (let i = start; i < end; i++) s[this.#used++] = source[i]!;
    this.#used = s.writeDoubleBE(revokedAtSeconds, this.#used);
    s[this.#used++] = reason === null || reason === CRL_REASONS.unspecified ? 0xff : reason;
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
 * Lints every entry as it goes: serial shape, strictly ascending (no serial listed twice), a
 * known reason code.
 */
export class CrlWriter {
  readonly digest = new EntriesDigest();
  #buf: Buffer;
  readonly #head: readonly Uint8Array[];
  readonly #headLength: number;
  readonly #entriesStart: number;
  #o: number;
  #count = 0;
  #last = "";

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
    return this.#count > 0 ? this.#last : null;
  }

  add(page: readonly RevokedRow[]): void {
    this.#reserve(page.length * MAX_ENTRY_OCTETS);
    const buf = this.#buf;
    let o = this.#o;
    for (const [serial, revokedAtMs, rawReason] of page) {
      if (serial.length < 2 || serial.length > 40 || serial.length % 2 !== 0) throw new Error(`bad serial ${serial}`);
      // The store's order (SQLite's BINARY collation is JS string order): strictly ascending, so
      // no serial can be listed twice and the next page resumes exactly after this one.
      if (this.#count > 0 && !(serial > this.#last)) throw new Error(`serial ${serial} out of order or listed twice`);
      const reason = rawReason === null || rawReason === CRL_REASONS.unspecified ? null : rawReason;
      if (reason !== null && !VALID_REASONS.has(reason)) throw new Error(`bad reason ${rawReason} for ${serial}`);
      const seconds = Math.floor(revokedAtMs / 1000);

      const start = o;
      o += 2; // the entry's SEQUENCE header, filled in below
      // userCertificate: a positive INTEGER (§4.1.2.2); a 00 octet when the top bit is set.
      const magnitude = serial.length / 2;
      const pad = serial.charCodeAt(0) >= 0x38 /* '8' */ ? 1 : 0;
      buf[o++] = 0x02;
      buf[o++] = magnitude + pad;
      if (pad) buf[o++] = 0;
      const serialStart = o;
      // Buffer#write stops at the first non-hex digit: a short write is a malformed serial.
      if (buf.write(serial, o, "hex") !== magnitude) throw new Error(`bad serial ${serial}`);
      o += magnitude;
      o = writeTime(buf, o, seconds);
      // §5.3.1: "the reason code CRL entry extension SHOULD be absent instead of using the
      // unspecified (0) reasonCode value".
      if (reason !== null) {
        REASON_EXTENSIONS_PREFIX.copy(buf, o);
        o += REASON_EXTENSIONS_PREFIX.length;
        buf[o++] = reason;
      }
      buf[start] = 0x30;
      buf[start + 1] = o - start - 2;

      this.digest.add(buf, serialStart, serialStart + magnitude, seconds, reason);
      this.#last = serial;
      this.#count++;
    }
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

  /** Grows (by half, one copy) only when the size hint was short. */
  #reserve(n: number): void {
    if (this.#o + n <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(Math.ceil(this.#buf.length * 1.5), this.#o + n));
    this.#buf.copy(grown, 0, 0, this.#o);
    this.#buf = grown;
  }
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §5.1.2.6 → §4.1.2.5), in place. */
function writeTime(buf: Buffer, o: number, seconds: number): number {
  // Calendar fields by integer arithmetic (days → civil date, H. Hinnant's algorithm): no Date
  // object per entry on a path that writes a million of them.
  const days = Math.floor(seconds / 86_400);
  const secs = seconds - days * 86_400;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  if (year < 1950 || year > 9999) throw new RangeError(`revocation time ${seconds} cannot be encoded`);
  const utc = year < 2050;
  buf[o++] = utc ? 0x17 : 0x18;
  buf[o++] = utc ? 13 : 15;
  if (!utc) o = two(buf, o, Math.floor(year / 100));
  o = two(buf, o, year % 100);
  o = two(buf, o, month);
  o = two(buf, o, day);
  o = two(buf, o, Math.floor(secs / 3600));
  o = two(buf, o, Math.floor((secs % 3600) / 60));
  o = two(buf, o, secs % 60);
  buf[o++] = 0x5a; // "Z"
  return o;
}

function two(buf: Buffer, o: number, v: number): number {
  buf[o] = 0x30 + Math.floor(v / 10);
  buf[o + 1] = 0x30 + (v % 10);
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
