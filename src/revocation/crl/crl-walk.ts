import { contextTag, DerError, DerReader, readOid, readSmallUint, readTime, readTimeSeconds, TAG, type Tlv } from "../../x509/der-reader.js";
import { OID } from "../../x509/oids.js";
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

/**
 * Walks a DER CertificateList with a cursor (x509/der-reader.ts): every TLV is checked for shape
 * and DER-ness, but nothing is materialised, so a million entries cost a linear pass and no
 * node cap applies (asn1js refuses past 10,000 nodes, which is what stalled CRLs of ~1,250
 * entries). Throws DerError for anything that is not a CRL fleetca could have written.
 */
export function walkCrl(der: Uint8Array, onEntry?: EntryVisitor): CrlWalk {
  const steps = walkSteps(der, onEntry);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * The same walk, giving the event loop a turn every WALK_SLICE entries: a million entries take a
 * few hundred milliseconds, which must not stall the OCSP requests the daemon is answering.
 */
export async function walkCrlAsync(der: Uint8Array, onEntry?: EntryVisitor): Promise<CrlWalk> {
  const steps = walkSteps(der, onEntry);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Entries walked between two turns of the event loop (a few milliseconds). */
const WALK_SLICE = 20_000;

function* walkSteps(der: Uint8Array, onEntry?: EntryVisitor): Generator<void, CrlWalk, void> {
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
    const rl = tbs.inside(listTlv);
    if (rl.done) throw new DerError("an empty revokedCertificates list must be absent (RFC 5280 §5.1.2.6)");
    while (!rl.done) {
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
      if (++entries % WALK_SLICE === 0) yield;
    }
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
  if (t.end - t.start !== REASON_EXTENSIONS_PREFIX.length + 1) return false;
  for (let i = 0; i < REASON_EXTENSIONS_PREFIX.length; i++) if (der[t.start + i] !== REASON_EXTENSIONS_PREFIX[i]) return false;
  return true;
}

function hex(b: Uint8Array, start: number, end: number): string {
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString("hex");
}
