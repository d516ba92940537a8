import { AsnConvert } from "@peculiar/asn1-schema";
import { KeyUsageFlags } from "@peculiar/asn1-x509";
import type { Issuer } from "../../issuance/issuer.js";
import { verifySignatureAsync } from "../../issuance/sign-tbs.js";
import type { RevokedPage, RevokedRow } from "../../storage/ports.js";
import { packRevokedRows } from "../../storage/revoked-page.js";
import { derBitString, derHeader } from "../../x509/der.js";
import { signatureAlgorithmId } from "../../x509/profile.js";
import { crlExtensionsField, crlHeadFields, CrlWriter } from "./crl-encoder.js";
import { walkCrlAsync } from "./crl-walk.js";

/** One CRL to sign: its number, its window and, for a partition, its own URL. */
export interface CrlHeaderFields {
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  /** A partition's URL, carried in its critical IssuingDistributionPoint; null for a full CRL. */
  distributionPointUrl: string | null;
}

/**
 * The entries, one page at a time, in ascending serial order: `afterSerial` is the last serial of
 * the previous page (null for the first). A page shorter than `pageSize` is the last one. A
 * store's pages come packed and asynchronously (CrlStore.revokedPage); a few rows held in memory
 * (the root CRL's) may come as rows, at once. The next page is asked for only once the last is
 * encoded: one page in flight, so memory stays bounded by a page.
 */
export type RevokedPages = (afterSerial: string | null, pageSize: number) => Promise<RevokedPage> | readonly RevokedRow[];

export interface BuiltCrl {
  der: Buffer;
  entries: number;
  /** EntriesDigest of what it lists (crl-encoder.ts). */
  digest: string;
}

/** RFC 5280 §5.2.3: a CRL number fits in 20 octets; fleetca's stay far below 2^53. */
const MAX_CRL_NUMBER = Number.MAX_SAFE_INTEGER;
/** BIT STRING of the largest signature fleetca makes (RSA-4096: 512 octets) with its header. */
const MAX_SIGNATURE_FIELD = 1_100;
/** Rows read and encoded between two turns of the event loop: a few milliseconds of work. */
export const CRL_PAGE_SIZE = 5_000;

/** What must hold before the CA key signs a CRL (DESIGN habit 1: lint before sign). */
export function lintCrlHeader(issuer: Issuer, h: CrlHeaderFields): string[] {
  const problems: string[] = [];
  if (!(issuer.info.keyUsage & KeyUsageFlags.cRLSign)) problems.push("issuer key usage lacks cRLSign (RFC 5280 §4.2.1.3)");
  if (!Number.isSafeInteger(h.crlNumber) || h.crlNumber < 0 || h.crlNumber > MAX_CRL_NUMBER) problems.push(`bad CRL number ${h.crlNumber}`);
  if (h.thisUpdate.getTime() % 1000 !== 0) problems.push("thisUpdate has sub-second precision the encoding would drop");
  if (h.nextUpdate.getTime() % 1000 !== 0) problems.push("nextUpdate has sub-second precision the encoding would drop");
  if (h.nextUpdate <= h.thisUpdate) problems.push("nextUpdate is not after thisUpdate");
  if (h.nextUpdate > issuer.info.notAfter) problems.push("nextUpdate is after the issuer's notAfter");
  if (h.thisUpdate < issuer.info.notBefore) problems.push("thisUpdate is before the issuer's notBefore");
  if (h.distributionPointUrl !== null && !/^https?:\/\/[\x21-\x7e]+$/.test(h.distributionPointUrl)) problems.push("bad distribution point URL");
  return problems;
}

/**
 * Builds, signs and checks one CRL, streaming (RFC 5280 §5): the entries are read page by page
 * and encoded straight to DER (crl-encoder.ts), giving the event loop a turn between pages, so
 * a million entries take bounded memory (~40 octets each, in one buffer sized from
 * `expectedEntries`, e.g. the last CRL's count) and the daemon keeps answering. The
 * result is checked without an object model: its signature is verified over the exact TBS bytes
 * shipped (off the event loop), and a structural walk (crl-walk.ts) confirms the header and that
 * the entries' digest equals the digest of the rows that went in.
 */
export async function buildCrl(issuer: Issuer, h: CrlHeaderFields, pages: RevokedPages, expectedEntries = 0): Promise<BuiltCrl> {
  const problems = lintCrlHeader(issuer, h);
  if (problems.length > 0) throw new Error(`CRL lint failed: ${problems.join("; ")}`);

  const algorithmDer = new Uint8Array(AsnConvert.serialize(signatureAlgorithmId(issuer.ref.scheme)));
  const header = {
    signatureAlgorithmDer: algorithmDer,
    issuerNameDer: issuer.info.subjectDer,
    authorityKeyId: issuer.keyId,
    crlNumber: h.crlNumber,
    thisUpdate: h.thisUpdate,
    nextUpdate: h.nextUpdate,
    distributionPointUrl: h.distributionPointUrl,
  };
  const writer = new CrlWriter(crlHeadFields(header), expectedEntries);
  for (;;) {
    const got = await pages(writer.lastSerial, CRL_PAGE_SIZE);
    const page = isRows(got) ? packRevokedRows(got) : got;
    writer.addPage(page);
    if (page.count < CRL_PAGE_SIZE) break;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const count = writer.count;
  const digest = writer.digest.hex();
  // The CRL shipped is a view of the very buffer that was signed: the TBS is never copied, and
  // the writer left room before it for the outer header and after it for the signature fields.
  const { buf, tbsStart, tbsEnd } = writer.finish([crlExtensionsField(header)], algorithmDer.length + MAX_SIGNATURE_FIELD);
  const tbs = buf.subarray(tbsStart, tbsEnd);
  const signature = await issuer.signer.sign(tbs);
  // CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue } (§5.1.1).
  const sigBits = derBitString(signature);
  if (sigBits.length > MAX_SIGNATURE_FIELD) throw new Error("signature larger than any fleetca key makes");
  let o = tbsEnd;
  buf.set(algorithmDer, o);
  o += algorithmDer.length;
  buf.set(sigBits, o);
  o += sigBits.length;
  const outer = derHeader(0x30, o - tbsStart);
  buf.set(outer, tbsStart - outer.length);
  const der = buf.subarray(tbsStart - outer.length, o);

  const mismatch = await checkSigned(issuer, h, der, count, digest);
  if (mismatch) throw new Error(`signed CRL does not match its content: ${mismatch}`);
  return { der, entries: count, digest };
}

function isRows(p: RevokedPage | readonly RevokedRow[]): p is readonly RevokedRow[] {
  return Array.isArray(p);
}

/** Null when `der` is the CRL asked for and its signature verifies; otherwise what differs. */
async function checkSigned(issuer: Issuer, h: CrlHeaderFields, der: Uint8Array, entries: number, digest: string): Promise<string | null> {
  const w = await walkCrlAsync(der);
  if (w.version !== 1) return "version";
  if (!w.tbsSignatureAlgorithmMatches) return "signature algorithm";
  if (!Buffer.from(w.issuerDer).equals(Buffer.from(issuer.info.subjectDer))) return "issuer name";
  if (!w.authorityKeyId || !Buffer.from(w.authorityKeyId).equals(Buffer.from(issuer.keyId))) return "authority key identifier";
  if (w.crlNumber !== h.crlNumber) return "CRL number";
  if (w.thisUpdate.getTime() !== h.thisUpdate.getTime()) return "thisUpdate";
  if (w.nextUpdate?.getTime() !== h.nextUpdate.getTime()) return "nextUpdate";
  if (w.distributionPointUrl !== h.distributionPointUrl) return "issuing distribution point";
  if (h.distributionPointUrl !== null && !(w.idpCritical && w.onlyContainsUserCerts)) return "issuing distribution point flags";
  if (w.entries !== entries || w.digest !== digest) return "entries";
  // A faulty signer (or an RSA fault) must never publish a CRL that does not verify.
  if (!(await verifySignatureAsync(issuer.info.spki, issuer.signer.keyType, w.tbs, w.signature))) return "signature does not verify";
  return null;
}
