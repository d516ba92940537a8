import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { CertificateList, CRLReason } from "@peculiar/asn1-x509";
import { CRL_REASONS } from "../src/core/revocation-reason.js";
import type { RevokedRow } from "../src/storage/ports.js";
import { crlExtensionsField, crlHeadFields, CrlWriter } from "../src/revocation/crl/crl-encoder.js";
import { walkCrl } from "../src/revocation/crl/crl-walk.js";
import { derBitString, derHeader, derSequence, derOid } from "../src/x509/der.js";
import { OID } from "../src/x509/oids.js";

const REASONS = [null, ...Object.values(CRL_REASONS)];

/** An unsigned CertificateList around the writer's TBS (a dummy signature): enough for both parsers. */
function encode(rows: RevokedRow[], distributionPointUrl: string | null = null): Uint8Array {
  const alg = derSequence(derOid("1.2.840.10045.4.3.2"));
  const header = {
    signatureAlgorithmDer: alg,
    issuerNameDer: derSequence(),
    authorityKeyId: Uint8Array.of(1, 2, 3),
    crlNumber: 42,
    thisUpdate: new Date(Date.UTC(2026, 11, 1)),
    nextUpdate: new Date(Date.UTC(2051, 0, 1)),
    distributionPointUrl,
  };
  const w = new CrlWriter(crlHeadFields(header), 0); // a zero hint: the buffer must grow
  for (let i = 0; i < rows.length; i += 70) w.add(rows.slice(i, i + 70));
  const sig = derBitString(Uint8Array.of(0x30, 0x00));
  const { buf, tbsStart, tbsEnd } = w.finish([crlExtensionsField(header)], alg.length + sig.length);
  const tbs = buf.subarray(tbsStart, tbsEnd);
  return Buffer.concat([derHeader(0x30, tbs.length + alg.length + sig.length), tbs, alg, sig]);
}

describe("CRL encoder (one-buffer DER writer) against the object model", () => {
  it("writes what @peculiar/asn1-x509 reads back, for random serials, times 1950–9999 and every reason", () => {
    const rows: RevokedRow[] = [];
    // 900: the object model refuses more than ~1,200 entries (asn1js node cap), the very reason for the walk.
    for (let i = 0; i < 900; i++) {
      // Serials of 1–20 octets, some with the top bit set (a sign octet goes in front).
      const len = 1 + (i % 20);
      const b = randomBytes(len);
      b[0] = b[0]! || 1;
      const seconds = Date.UTC(1950, 0, 1) / 1000 + Math.floor(Math.random() * (Date.UTC(9999, 11, 31) / 1000 - Date.UTC(1950, 0, 1) / 1000));
      rows.push([b.toString("hex"), seconds * 1000 + (i % 1000), REASONS[i % REASONS.length]!]);
    }
    rows.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const unique = rows.filter((r, i) => i === 0 || r[0] !== rows[i - 1]![0]);
    const der = encode(unique, "http://ca.test/crl/010203/3");

    // The slow, obviously-correct path: the object model (fine at this size).
    const model = AsnConvert.parse(der, CertificateList).tbsCertList;
    expect(model.revokedCertificates).toHaveLength(unique.length);
    for (const [i, r] of unique.entries()) {
      const e = model.revokedCertificates![i]!;
      expect(Buffer.from(e.userCertificate).toString("hex").replace(/^00(?=[89a-f])/, "")).toBe(r[0]);
      expect(e.revocationDate.getTime().getTime()).toBe(Math.floor(r[1] / 1000) * 1000);
      const ext = e.crlEntryExtensions?.find((x) => x.extnID === OID.cRLReasons);
      const want = r[2] === null || r[2] === CRL_REASONS.unspecified ? null : r[2];
      expect(ext ? AsnConvert.parse(ext.extnValue.buffer, CRLReason).reason : null).toBe(want);
    }
    const idp = model.crlExtensions!.find((x) => x.extnID === "2.5.29.28")!;
    expect(idp.critical).toBe(true);

    // The walk reads the same, and says the same as the writer's digest.
    const seen: string[] = [];
    const w = walkCrl(der, (serial, at, reason) => seen.push(`${serial} ${at.getTime()} ${reason}`));
    expect(w.entries).toBe(unique.length);
    expect(w.crlNumber).toBe(42);
    expect(w.distributionPointUrl).toBe("http://ca.test/crl/010203/3");
    expect(w.idpCritical && w.onlyContainsUserCerts).toBe(true);
    expect(seen).toEqual(unique.map((r) => `${r[0]} ${Math.floor(r[1] / 1000) * 1000} ${r[2] === null || r[2] === 0 ? null : r[2]}`));
  });

  it("omits an empty list (RFC 5280 §5.1.2.6) and refuses what would list a serial twice or out of order", () => {
    const empty = AsnConvert.parse(encode([]), CertificateList).tbsCertList;
    expect(empty.revokedCertificates).toBeUndefined();
    expect(walkCrl(encode([])).entries).toBe(0);
    expect(() => encode([["02", 0, null], ["01", 0, null]])).toThrow(/out of order or listed twice/);
    expect(() => encode([["01", 0, null], ["01", 0, null]])).toThrow(/out of order or listed twice/);
    expect(() => encode([["0g", 0, null]])).toThrow(/bad serial/);
    expect(() => encode([["01", 0, 7]])).toThrow(/bad reason 7/);
  });
});
