import { contextTag, DerError, DerReader, readOid, readSmallUint, readTime, readTimeSeconds, TAG, type Tlv } from "../../x509/der-reader.js";
import { OID } from "../../x509/oids.js";
import { NO_REASON } from "../../storage/revoked-page.js";
import { EntriesDigest, OID_ISSUING_DISTRIBUTION_POINT, REASON_EXTENSIONS_PREFIX } from "./crl-encoder.js";

/** What the structural walk of a CertificateList found (RFC 5280 §5.1). */
export interface CrlWalk {
  /** The exact TBSCertList octets the signature covers. */
  tbs: Uint8Array;
  signatureAlgorithmOid: string;
  /** The signature value (BIT STRING content without its unused-bits octet). */
  signature: Uint8Array;
  /** The signature field inside the TBS, which §5.1.2.2 says MUST equal the outer one. */
  tbsSignatureAlgorithmMatches: boolean;
  version: number;
  issuerDer: Uint8Array;
  thisUpdate: Date;
  nextUpdate: Date | null;
  crlNumber: number | null;
  authorityKeyId: Uint8Array | null;
  /** The IssuingDistributionPoint's fullName URI, when the CRL has one (§5.2.5). */
  distributionPointUrl: string | null;
  idpCritical: boolean;
  onlyContainsUserCerts: boolean;
  entries: number;
  /** EntriesDigest of the entries, in order: comparable with what the builder encoded. */
  digest: string;
}

export type EntryVisitor = (serial: string, revokedAt: Date, reason: number | null) => void;

export interface WalkOptions {
  /**
   * Read entries of fleetca's own shape in place (the default). False sends every entry through
   * the general DER cursor path: the slower, obviously correct walk the tests compare with.
   */
  fastPath?: boolean;
}

/**
 * Walks a DER CertificateList with a cursor (x509/der-reader.ts): every TLV is checked for shape
 * and DER-ness, but nothing is materialised, so a million entries cost a linear pass and no
 * node cap applies (asn1js refuses past 10,000 nodes, which is what stalled CRLs of ~1,250
 * entries). Throws DerError for anything that is not a CRL fleetca could have written.
 */
export function walkCrl(der: Uint8Array, onEntry?: EntryVisitor, opts: WalkOptions = {}): CrlWalk {
  const steps = walkSteps(der, onEntry, opts.fastPath ?? true);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * The same walk, giving the event loop a turn every WALK_SLICE entries: a million entries take a
 * few hundred milliseconds, which must not stall the OCSP requests the daemon is answering.
 */
export async function walkCrlAsync(der: Uint8Array, onEntry?: EntryVisitor, opts: WalkOptions = {}): Promise<CrlWalk> {
  const steps = walkSteps(der, onEntry, opts.fastPath ?? true);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Entries walked between two turns of the event loop (a few milliseconds). */
const WALK_SLICE = 20_000;

function* walkSteps(der: Uint8Array, onEntry: EntryVisitor | undefined, fastPath: boolean): Generator<void, CrlWalk, void> {
  const top = new DerReader(der);
  const outer = top.expect(TAG.SEQUENCE, "CertificateList");
  top.finish("CertificateList");
  const list = top.inside(outer);
  const tbsTlv = list.expect(TAG.SEQUENCE, "tbsCertList");
  const algTlv = list.expect(TAG.SEQUENCE, "signatureAlgorithm");
  const sigTlv = list.expect(TAG.BIT_STRING, "signatureValue");
  list.finish("CertificateList");
  const sigContent = list.content(sigTlv);
  if (sigContent.length < 1 || sigContent[0] !== 0) throw new DerError("signature is not a whole number of octets");
  const outerAlg = list.whole(algTlv);

  const tbs = list.inside(tbsTlv);
  const versionTlv = tbs.optional(TAG.INTEGER);
  const version = versionTlv ? readSmallUint(tbs.content(versionTlv)) : 0;
  const innerAlgTlv = tbs.expect(TAG.SEQUENCE, "signature");
  const innerAlg = tbs.whole(innerAlgTlv);
  const issuerTlv = tbs.expect(TAG.SEQUENCE, "issuer");
  const thisUpdate = readTimeTlv(tbs, tbs.next(), "thisUpdate");
  let nextUpdate: Date | null = null;
  if (tbs.peekTag() === TAG.UTC_TIME || tbs.peekTag() === TAG.GENERALIZED_TIME) nextUpdate = readTimeTlv(tbs, tbs.next(), "nextUpdate");

  const digest = new EntriesDigest();
  let entries = 0;
  const listTlv = tbs.optional(TAG.SEQUENCE);
  if (listTlv) {
    if (listTlv.contentStart >= listTlv.end) throw new DerError("an empty revokedCertificates list must be absent (RFC 5280 §5.1.2.6)");
    const list: EntryList = {
      der, at: listTlv.contentStart, end: listTlv.end, entries: 0, digest, records: Buffer.allocUnsafe(65_536), used: 0, time: new TimeReader(), onEntry, fastPath,
    };
    // A slice at a time, in a plain function: V8 does not optimise a long loop inside a
    // generator while it runs (no on-stack replacement), a plain function's it does.
    while (list.at < list.end) {
      walkEntries(list, WALK_SLICE);
      if (list.at < list.end) yield;
    }
    flushRecords(list);
    entries = list.entries;
  }

  let crlNumber: number | null = null;
  let authorityKeyId: Uint8Array | null = null;
  let distributionPointUrl: string | null = null;
  let idpCritical = false;
  let onlyContainsUserCerts = false;
  const extsWrapper = tbs.optional(contextTag(0));
  if (extsWrapper) {
    const w = tbs.inside(extsWrapper);
    const extsTlv = w.expect(TAG.SEQUENCE, "crlExtensions");
    w.finish("crlExtensions");
    for (const ext of extensions(w, extsTlv)) {
      const v = new DerReader(ext.value);
      if (ext.oid === OID.cRLNumber) {
        crlNumber = readSmallUint(v.content(v.expect(TAG.INTEGER, "CRLNumber")));
      } else if (ext.oid === OID.authorityKeyIdentifier) {
        const aki = v.inside(v.expect(TAG.SEQUENCE, "AuthorityKeyIdentifier"));
        const id = aki.optional(contextTag(0, false));
        authorityKeyId = id ? aki.content(id) : null;
      } else if (ext.oid === OID_ISSUING_DISTRIBUTION_POINT) {
        idpCritical = ext.critical;
        const idp = v.inside(v.expect(TAG.SEQUENCE, "IssuingDistributionPoint"));
        const dp = idp.optional(contextTag(0));
        if (dp) {
          const names = idp.inside(dp);
          const fullName = names.optional(contextTag(0));
          if (fullName) {
            const gn = names.inside(fullName);
            const uri = gn.optional(contextTag(6, false));
            if (uri) distributionPointUrl = Buffer.from(gn.content(uri)).toString("latin1");
          }
        }
        const only = idp.optional(contextTag(1, false));
        onlyContainsUserCerts = only !== null && idp.content(only)[0] === 0xff;
      } else if (ext.critical) {
        throw new DerError(`unknown critical CRL extension ${ext.oid}`);
      }
      v.finish(ext.oid);
    }
  }
  tbs.finish("tbsCertList");

  return {
    tbs: list.whole(tbsTlv),
    signatureAlgorithmOid: algorithmOid(list, algTlv),
    signature: sigContent.subarray(1),
    tbsSignatureAlgorithmMatches: Buffer.from(innerAlg).equals(Buffer.from(outerAlg)),
    version,
    issuerDer: tbs.whole(issuerTlv),
    thisUpdate,
    nextUpdate,
    crlNumber,
    authorityKeyId,
    distributionPointUrl,
    idpCritical,
    onlyContainsUserCerts,
    entries,
    digest: digest.hex(),
  };
}

// walkEntries compares these octets inline, one by one.
if (!Buffer.from([0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01]).equals(REASON_EXTENSIONS_PREFIX)) throw new Error("reason prefix out of step");

/** Where a walk of the revoked list is, and what it has seen. */
interface EntryList {
  readonly der: Uint8Array;
  at: number;
  readonly end: number;
  entries: number;
  readonly digest: EntriesDigest;
  /** EntriesDigest records of the entries walked in place, not yet hashed: [0, used). */
  readonly records: Buffer;
  used: number;
  readonly time: TimeReader;
  readonly onEntry: EntryVisitor | undefined;
  readonly fastPath: boolean;
}

/** Hashes the records written in place so far (before an entry takes the general path, and at the end). */
function flushRecords(list: EntryList): void {
  if (list.used > 0) list.digest.update(list.records.subarray(0, list.used));
  list.used = 0;
}

/**
 * Walks up to `max` entries of the revoked list from `list.at`. The in-place path makes no call
 * per entry (the record, the reason extension's octets and the time are handled inline): a
 * daemon's first CRL runs this loop before V8 has optimised it, where every call costs.
 */
function walkEntries(list: EntryList, max: number): void {
  const { der, end: listEnd, time, onEntry, fastPath, records } = list;
  let p = list.at;
  let u = list.used;
  let n = 0;
  for (; n < max && p < listEnd; n++) {
    // The shape fleetca writes, read in place with no reader or TLV object: SEQUENCE {
    // INTEGER, time [, the reasonCode-only Extensions] } with short-form lengths throughout
    // (every entry is under 128 octets). Each test below is one the general path makes too;
    // anything else (another shape, or an error to report) takes the general path.
    const c = p + 2;
    const entryEnd = c + der[c - 1]!;
    const serialLength = der[c + 1]!;
    const serialEnd = c + 2 + serialLength;
    const timeLength = der[serialEnd + 1]!;
    const timeEnd = serialEnd + 2 + timeLength;
    const x = timeEnd; // the reasonCode-only Extensions (REASON_EXTENSIONS_PREFIX, then the code)
    if (
      fastPath &&
      c <= listEnd &&
      der[p] === TAG.SEQUENCE &&
      der[c - 1]! < 0x80 &&
      entryEnd <= listEnd &&
      der[c] === TAG.INTEGER &&
      serialLength >= 1 &&
      serialLength < 0x80 &&
      serialEnd + 2 <= entryEnd &&
      timeLength < 0x80 &&
      timeEnd <= entryEnd &&
      (timeEnd === entryEnd ||
        (entryEnd - timeEnd === 14 &&
          der[x] === 0x30 && der[x + 1] === 0x0c && der[x + 2] === 0x30 && der[x + 3] === 0x0a && der[x + 4] === 0x06 &&
          der[x + 5] === 0x03 && der[x + 6] === 0x55 && der[x + 7] === 0x1d && der[x + 8] === 0x15 && der[x + 9] === 0x04 &&
          der[x + 10] === 0x03 && der[x + 11] === 0x0a && der[x + 12] === 0x01))
    ) {
      let serialStart = c + 2;
      if (der[serialStart]! & 0x80) throw new DerError("serial is not a positive INTEGER");
      if (serialLength > 1 && der[serialStart] === 0) serialStart++;
      // The time: on the date of the one before, only its clock digits (TimeReader).
      const tag = der[serialEnd]!;
      const ts = serialEnd + 2;
      const dateLength = time.dateLength;
      let seconds = -1;
      if (tag === time.tag && timeLength === dateLength + 7 && der[timeEnd - 1] === 0x5a) {
        const date = time.date;
        let same = true;
        for (let i = 0; i < dateLength; i++) {
          if (der[ts + i] !== date[i]) {
            same = false;
            break;
          }
        }
        const k = ts + dateLength;
        const h1 = der[k]! - 0x30, h2 = der[k + 1]! - 0x30, m1 = der[k + 2]! - 0x30, m2 = der[k + 3]! - 0x30, s1 = der[k + 4]! - 0x30, s2 = der[k + 5]! - 0x30;
        if (same && h1 >= 0 && h1 <= 2 && h2 >= 0 && h2 <= 9 && m1 >= 0 && m1 <= 5 && m2 >= 0 && m2 <= 9 && s1 >= 0 && s1 <= 5 && s2 >= 0 && s2 <= 9 && h1 * 10 + h2 <= 23) {
          seconds = time.midnight + (h1 * 10 + h2) * 3600 + (m1 * 10 + m2) * 60 + s1 * 10 + s2;
        }
      }
      if (seconds === -1) seconds = time.read(tag, der, ts, timeEnd);
      const reason = timeEnd === entryEnd ? null : der[entryEnd - 1]!;
      // Its EntriesDigest record (crl-encoder.ts), written here rather than by a call.
      if (u + 30 > records.length) {
        list.used = u;
        flushRecords(list);
        u = 0;
      }
      records[u++] = serialEnd - serialStart;
      for (let i = serialStart; i < serialEnd; i++) records[u++] = der[i]!;
      const hi = Math.floor(seconds / 4_294_967_296);
      const lo = seconds - hi * 4_294_967_296;
      records[u] = hi >>> 24;
      records[u + 1] = hi >>> 16;
      records[u + 2] = hi >>> 8;
      records[u + 3] = hi;
      records[u + 4] = lo >>> 24;
      records[u + 5] = lo >>> 16;
      records[u + 6] = lo >>> 8;
      records[u + 7] = lo;
      records[u + 8] = reason === null || reason === 0 ? NO_REASON : reason;
      u += 9;
      onEntry?.(hex(der, serialStart, serialEnd), new Date(seconds * 1000), reason);
      p = entryEnd;
    } else {
      list.used = u;
      flushRecords(list);
      u = 0;
      p = walkEntry(der, new DerReader(der, p, listEnd), list.digest, onEntry);
    }
  }
  list.at = p;
  list.used = u;
  list.entries += n;
}

/**
 * One entry of the revoked list, any shape RFC 5280 §5.1.2.6 allows, through the DER cursor:
 * the general (and the obviously correct) path. Returns where the entry ends.
 */
function walkEntry(der: Uint8Array, rl: DerReader, digest: EntriesDigest, onEntry?: EntryVisitor): number {
  const entryTlv = rl.expect(TAG.SEQUENCE, "revoked certificate");
  const entry = new DerReader(der, entryTlv.contentStart, entryTlv.end);
  const serialTlv = entry.expect(TAG.INTEGER, "userCertificate");
  // The magnitude, as the store keeps serials (core/serial.ts): without a sign octet.
  let serialStart = serialTlv.contentStart;
  const serialEnd = serialTlv.end;
  if (serialEnd === serialStart || der[serialStart]! & 0x80) throw new DerError("serial is not a positive INTEGER");
  if (serialEnd - serialStart > 1 && der[serialStart] === 0) serialStart++;
  const timeTlv = entry.next();
  const seconds = readTimeSeconds(timeTlv.tag, der, timeTlv.contentStart, timeTlv.end);
  let reason: number | null = null;
  if (!entry.done) {
    const extsTlv = entry.expect(TAG.SEQUENCE, "crlEntryExtensions");
    if (isReasonOnly(der, extsTlv)) {
      // The one extension fleetca writes, in its only encoding: read the code in place.
      reason = der[extsTlv.end - 1]!;
    } else {
      for (const ext of extensions(entry, extsTlv)) {
        if (ext.oid === OID.cRLReasons) {
          const v = new DerReader(ext.value);
          const e = v.expect(TAG.ENUMERATED, "reasonCode");
          v.finish("reasonCode");
          reason = readSmallUint(v.content(e));
        } else if (ext.critical) {
          throw new DerError(`unknown critical CRL entry extension ${ext.oid}`);
        }
      }
    }
  }
  entry.finish("revoked certificate");
  digest.add(der, serialStart, serialEnd, seconds, reason);
  onEntry?.(hex(der, serialStart, serialEnd), new Date(seconds * 1000), reason);
  return entryTlv.end;
}

/**
 * readTimeSeconds with the day remembered: the entries of a CRL share few revocation days, so
 * a time whose date digits equal the last one's costs its clock digits only (read inline by
 * walkEntries). A new date goes through readTimeSeconds whole (every check it makes), and its
 * midnight is kept.
 */
class TimeReader {
  tag = -1;
  readonly date = new Uint8Array(8);
  dateLength = 0;
  midnight = 0;

  read(tag: number, der: Uint8Array, start: number, end: number): number {
    const seconds = readTimeSeconds(tag, der, start, end);
    const dateLength = tag === TAG.UTC_TIME ? 6 : 8;
    const clock = start + dateLength;
    this.tag = tag;
    this.dateLength = dateLength;
    for (let i = 0; i < dateLength; i++) this.date[i] = der[start + i]!;
    this.midnight = seconds - (twoDigits(der, clock) * 3600 + twoDigits(der, clock + 2) * 60 + twoDigits(der, clock + 4));
    return seconds;
  }
}

/** Two decimal digits, or 99 (out of every range checked) for anything else. */
function twoDigits(b: Uint8Array, i: number): number {
  const hi = b[i]! - 0x30;
  const lo = b[i + 1]! - 0x30;
  return hi >= 0 && hi <= 9 && lo >= 0 && lo <= 9 ? hi * 10 + lo : 99;
}

interface RawExtension {
  oid: string;
  critical: boolean;
  value: Uint8Array;
}

/** Extensions ::= SEQUENCE OF Extension (RFC 5280 §4.1). */
function extensions(parent: DerReader, seq: Tlv): RawExtension[] {
  const out: RawExtension[] = [];
  const r = parent.inside(seq);
  while (!r.done) {
    const e = r.inside(r.expect(TAG.SEQUENCE, "Extension"));
    const oid = readOid(e.content(e.expect(TAG.OID, "extnID")));
    const crit = e.optional(TAG.BOOLEAN);
    const value = e.content(e.expect(TAG.OCTET_STRING, "extnValue"));
    e.finish("Extension");
    out.push({ oid, critical: crit !== null && e.content(crit)[0] === 0xff, value });
  }
  return out;
}

function algorithmOid(parent: DerReader, alg: Tlv): string {
  const r = parent.inside(alg);
  return readOid(r.content(r.expect(TAG.OID, "algorithm")));
}

function readTimeTlv(r: DerReader, t: Tlv, what: string): Date {
  if (t.tag !== TAG.UTC_TIME && t.tag !== TAG.GENERALIZED_TIME) throw new DerError(`${what}: not a time`);
  return readTime(t.tag, r.content(t));
}

/** True when `t` is exactly Extensions { reasonCode, non-critical, one-octet ENUMERATED }. */
function isReasonOnly(der: Uint8Array, t: Tlv): boolean {
  return t.end - t.start === REASON_EXTENSIONS_PREFIX.length + 1 && isReasonOnlyAt(der, t.start);
}

/** True when the reasonCode-only Extensions' first 13 octets start at `at` (its code follows). */
function isReasonOnlyAt(der: Uint8Array, at: number): boolean {
  for (let i = 0; i < REASON_EXTENSIONS_PREFIX.length; i++) if (der[at + i] !== REASON_EXTENSIONS_PREFIX[i]) return false;
  return true;
}

function hex(b: Uint8Array, start: number, end: number): string {
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString("hex");
}
