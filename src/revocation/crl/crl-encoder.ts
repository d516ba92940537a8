import { createHash, type Hash } from "node:crypto";
import { CRL_REASONS } from "../../core/revocation-reason.js";
import type { RevokedEntry } from "../../storage/ports.js";
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
const VALID_REASONS = new Set<number>(Object.values(CRL_REASONS));
/** The reasonCode entry extension minus its last octet (the code): Extensions { Extension { id, OCTET STRING { ENUMERATED } } }. */
const REASON_EXTENSIONS_PREFIX = Buffer.from([0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01]);

/**
 * What a CRL's entries say, as a digest: serial, revocation second and reason (none for
 * unspecified) of every entry in order. The builder computes it from the database rows it encodes;
 * the structural walk (crl-walk.ts) recomputes it from the signed bytes, so the two meeting proves
 * the CRL lists exactly what the database said, without a second object model.
 */
export class EntriesDigest {
  readonly #hash: Hash = createHash("sha256");
  #pending = "";

  add(serialHex: string, revokedAtSeconds: number, reason: number | null): void {
    this.#pending += `${serialHex},${revokedAtSeconds},${reason === null || reason === CRL_REASONS.unspecified ? "" : reason}\n`;
    if (this.#pending.length > 65_536) this.#flush();
  }

  hex(): string {
    this.#flush();
    return this.#hash.copy().digest("hex");
  }

  #flush(): void {
    this.#hash.update(this.#pending, "latin1");
    this.#pending = "";
  }
}

/**
 * The revokedCertificates list (RFC 5280 §5.1.2.6), written as DER page by page in the order the
 * store reads them (ascending serial). Lints every entry as it goes (serial shape, strictly
 * ascending so no serial is listed twice, a known reason code): it never holds the entries
 * themselves, only their encodings, ~40 octets each.
 */
export class RevokedListWriter {
  readonly #chunks: Buffer[] = [];
  readonly digest = new EntriesDigest();
  #bytes = 0;
  #count = 0;
  #last = "";

  get count(): number {
    return this.#count;
  }

  /** The serial the next page starts after (keyset pagination), or null before the first. */
  get lastSerial(): string | null {
    return this.#count > 0 ? this.#last : null;
  }

  add(page: readonly RevokedEntry[]): void {
    const buf = Buffer.allocUnsafe(page.length * MAX_ENTRY_OCTETS);
    let o = 0;
    for (const e of page) {
      const serial = e.serial;
      if (serial.length < 2 || serial.length > 40 || serial.length % 2 !== 0 || !/^[0-9a-f]+$/.test(serial)) throw new Error(`bad serial ${serial}`);
      // The store's order (SQLite's BINARY collation is JS string order): strictly ascending, so
      // no serial can be listed twice and the next page resumes exactly after this one.
      if (this.#count > 0 && !(serial > this.#last)) throw new Error(`serial ${serial} out of order or listed twice`);
      const reason = e.reason === null || e.reason === CRL_REASONS.unspecified ? null : e.reason;
      if (reason !== null && !VALID_REASONS.has(reason)) throw new Error(`bad reason ${e.reason} for ${serial}`);
      const seconds = Math.floor(e.revokedAt.getTime() / 1000);

      const start = o;
      o += 2; // the entry's SEQUENCE header, filled in below
      // userCertificate: a positive INTEGER (§4.1.2.2); a 00 octet when the top bit is set.
      const magnitude = serial.length / 2;
      const pad = serial.charCodeAt(0) >= 0x38 /* '8' */ ? 1 : 0;
      buf[o++] = 0x02;
      buf[o++] = magnitude + pad;
      if (pad) buf[o++] = 0;
      o += buf.write(serial, o, "hex");
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

      this.digest.add(serial, seconds, reason);
      this.#last = serial;
      this.#count++;
    }
    this.#chunks.push(buf.subarray(0, o));
    this.#bytes += o;
  }

  /** The revokedCertificates SEQUENCE, or nothing: "When there are no revoked certificates, the revoked certificates list MUST be absent" (§5.1.2.6). */
  encoded(): Buffer[] {
    return this.#count === 0 ? [] : [Buffer.from(derHeader(0x30, this.#bytes)), ...this.#chunks];
  }
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §5.1.2.6 → §4.1.2.5), in place. */
function writeTime(buf: Buffer, o: number, seconds: number): number {
  const d = new Date(seconds * 1000);
  const year = d.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new RangeError(`revocation time ${d.toISOString()} cannot be encoded`);
  const utc = year < 2050;
  buf[o++] = utc ? 0x17 : 0x18;
  buf[o++] = utc ? 13 : 15;
  if (!utc) o = two(buf, o, Math.floor(year / 100));
  o = two(buf, o, year % 100);
  o = two(buf, o, d.getUTCMonth() + 1);
  o = two(buf, o, d.getUTCDate());
  o = two(buf, o, d.getUTCHours());
  o = two(buf, o, d.getUTCMinutes());
  o = two(buf, o, d.getUTCSeconds());
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

/**
 * The TBSCertList (RFC 5280 §5.1.2) around already-encoded entries, in one buffer of exactly the
 * right size: version v2 (it has extensions), signature, issuer, thisUpdate, nextUpdate, the list,
 * and crlExtensions [0]: AKI (§5.2.1) and CRL number (§5.2.3), non-critical, and for a partition
 * the IDP, critical (§5.2.5 "this extension MUST be critical"), so a relying party cannot take
 * one partition for the whole list or for another partition.
 */
export function crlTbsDer(h: CrlHeader, entries: readonly Buffer[]): Buffer {
  const extensions = [
    derExtension(OID.authorityKeyIdentifier, false, derSequence(derTlv(0x80, h.authorityKeyId))),
    derExtension(OID.cRLNumber, false, derSmallUint(h.crlNumber)),
    ...(h.distributionPointUrl === null ? [] : [derExtension(OID_ISSUING_DISTRIBUTION_POINT, true, issuingDistributionPoint(h.distributionPointUrl))]),
  ];
  const head = [
    derSmallUint(1), // Version v2
    h.signatureAlgorithmDer,
    h.issuerNameDer,
    derTime(h.thisUpdate),
    derTime(h.nextUpdate),
  ];
  const tail = [derTlv(0xa0, derSequence(...extensions))];
  let contentLength = 0;
  for (const p of [...head, ...entries, ...tail]) contentLength += p.length;
  const header = derHeader(0x30, contentLength);
  const out = Buffer.allocUnsafe(header.length + contentLength);
  let o = 0;
  for (const p of [header, ...head, ...entries, ...tail]) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] { fullName [0] { URI [6] } },
 * onlyContainsUserCerts [1] TRUE } — the same DistributionPointName the certificates' CRL
 * distribution point carries, which is what lets a relying party match the two (§6.3.3 (b)(2)).
 */
function issuingDistributionPoint(url: string): Uint8Array {
  return derSequence(derTlv(0xa0, derTlv(0xa0, derTlv(0x86, Buffer.from(url, "latin1")))), Uint8Array.of(0x81, 0x01, 0xff));
}
