import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { CertificateList, CRLReason } from "@peculiar/asn1-x509";
import { CRL_REASONS } from "../src/core/revocation-reason.js";
import type { RevokedRow } from "../src/storage/ports.js";
import { packRevokedRows, unpackRevokedPage } from "../src/storage/revoked-page.js";
import type { SerialHex } from "../src/core/serial.js";
import { DerError } from "../src/x509/der-reader.js";
import { crlExtensionsField, crlHeadFields, CrlWriter, EntriesDigest } from "../src/revocation/crl/crl-encoder.js";
import { walkCrl } from "../src/revocation/crl/crl-walk.js";
import { derBitString, derExtension, derHeader, derSequence, derOid, derTime, derUnsignedInteger } from "../src/x509/der.js";
import { OID } from "../src/x509/oids.js";

const REASONS = [null, ...Object.values(CRL_REASONS)];

/** An unsigned CertificateList around the writer's TBS (a dummy signature): enough for both parsers. */
function encode(rows: RevokedRow[], distributionPointUrl: string | null = null): Uint8Array {
  return encodeWithDigest(rows, distributionPointUrl).der;
}

function encodeWithDigest(rows: RevokedRow[], distributionPointUrl: string | null = null): { der: Uint8Array; digest: string } {
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
  for (let i = 0; i < rows.length; i += 70) w.addPage(packRevokedRows(rows.slice(i, i + 70)));
  const sig = derBitString(Uint8Array.of(0x30, 0x00));
  const { buf, tbsStart, tbsEnd } = w.finish([crlExtensionsField(header)], alg.length + sig.length);
  const tbs = buf.subarray(tbsStart, tbsEnd);
  return { der: Buffer.concat([derHeader(0x30, tbs.length + alg.length + sig.length), tbs, alg, sig]), digest: w.digest.hex() };
}

const ALG = derSequence(derOid("1.2.840.10045.4.3.2"));

/** A CertificateList with the given entries, assembled TLV by TLV (no CrlWriter): any shape. */
function assemble(entries: Uint8Array[]): Uint8Array {
  const header = {
    signatureAlgorithmDer: ALG,
    issuerNameDer: derSequence(),
    authorityKeyId: Uint8Array.of(1, 2, 3),
    crlNumber: 7,
    thisUpdate: new Date(Date.UTC(2026, 11, 1)),
    nextUpdate: new Date(Date.UTC(2026, 11, 2)),
    distributionPointUrl: null,
  };
  const tbs = derSequence(...crlHeadFields(header), ...(entries.length ? [derSequence(...entries)] : []), crlExtensionsField(header));
  return derSequence(tbs, ALG, derBitString(Uint8Array.of(0x30, 0x00)));
}

/** What a walk says, or the error it throws, as one comparable value. */
function walkResult(der: Uint8Array, fastPath: boolean): unknown {
  try {
    const seen: string[] = [];
    const w = walkCrl(der, (serial, at, reason) => seen.push(`${serial} ${at.getTime()} ${reason}`), { fastPath });
    return { entries: w.entries, digest: w.digest, seen };
  } catch (e) {
    return { error: e instanceof DerError ? "DerError" : String(e) };
  }
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
    const { der, digest } = encodeWithDigest(unique, "http://ca.test/crl/010203/3");

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
    // The builder's digest (whole pages hashed) is the walk's (entry by entry from the DER), and
    // the general walk (the DER cursor for every entry) says the same as the in-place one.
    expect(w.digest).toBe(digest);
    expect(walkResult(der, false)).toEqual(walkResult(der, true));
  });

  it("walks entries of other shapes through the general path, and both walks agree on every corruption", () => {
    const time = derTime(new Date(Date.UTC(2026, 0, 2, 3, 4, 5)));
    const reason = (code: number, critical = false) => derExtension(OID.cRLReasons, critical, Uint8Array.of(0x0a, 0x01, code));
    const invalidity = derExtension("2.5.29.24", false, derTime(new Date(Date.UTC(2060, 0, 1))));
    const entries = [
      derSequence(derUnsignedInteger(Uint8Array.of(0x01)), time),
      derSequence(derUnsignedInteger(Uint8Array.of(0x02)), time, derSequence(reason(1, true))), // critical reasonCode
      derSequence(derUnsignedInteger(Uint8Array.of(0x03)), time, derSequence(invalidity, reason(4))), // two extensions
      derSequence(derUnsignedInteger(Buffer.alloc(20, 0x7f)), derTime(new Date(Date.UTC(2070, 5, 6))), derSequence(reason(5))), // GeneralizedTime
      derSequence(derUnsignedInteger(Uint8Array.of(0x05)), time, derSequence(...Array.from({ length: 6 }, () => invalidity))), // over 127 octets
      derSequence(derUnsignedInteger(Uint8Array.of(0x80)), time, derSequence(reason(0))), // a sign octet; unspecified written out
    ];
    const der = assemble(entries);
    const fast = walkResult(der, true);
    expect(fast).toEqual(walkResult(der, false));
    expect(fast).toMatchObject({ entries: 6, seen: [`01 ${Date.UTC(2026, 0, 2, 3, 4, 5)} null`, expect.stringMatching(/^02 \d+ 1$/), expect.stringMatching(/^03 \d+ 4$/), `${"7f".repeat(20)} ${Date.UTC(2070, 5, 6)} 5`, expect.stringMatching(/^05 \d+ null$/), expect.stringMatching(/^80 \d+ 0$/)] });

    // Every single-octet corruption of fleetca's own entries (and of the list around them): the
    // in-place walk accepts exactly what the general one does, and says the same.
    const ours = encode([["01", 1_700_000_000_000, null], ["02", 1_700_000_001_000, 1], ["8a", 2_600_000_000_000, 4]]);
    const listStart = Buffer.from(ours).indexOf(Buffer.from([0x30, 0x12, 0x02, 0x01, 0x01])); // the first entry
    expect(listStart).toBeGreaterThan(0);
    let differences = 0;
    let refused = 0;
    for (let i = listStart - 2; i < listStart + 3 * 30 + 20; i++) {
      for (const v of [0x00, 0x01, 0x02, 0x0c, 0x0d, 0x0f, 0x17, 0x18, 0x30, 0x5a, 0x7f, 0x80, 0x81, 0xff, ours[i]! ^ 0x01]) {
        const bad = Uint8Array.from(ours);
        bad[i] = v;
        const fast = JSON.stringify(walkResult(bad, true));
        if (fast !== JSON.stringify(walkResult(bad, false))) differences++;
        if (fast.includes("DerError")) refused++;
      }
    }
    expect(differences).toBe(0);
    expect(refused).toBeGreaterThan(500); // the corruptions do reach the checks
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

  it("reads packed pages (RevokedPage) and refuses any that is not what a store may hand over", () => {
    const rows: RevokedRow[] = [["01", 1_000, null], ["0102", 2_500, 0], ["ff", -1_500, 1]];
    const page = packRevokedRows(rows);
    // The reference packing, octet by octet: length, magnitude, seconds (two's complement), reason.
    expect(Buffer.from(page.bytes).toString("hex")).toBe(
      ["01" + "01" + "0000000000000001" + "ff", "02" + "0102" + "0000000000000002" + "00", "01" + "ff" + "fffffffffffffffe" + "01"].join(""),
    );
    expect(unpackRevokedPage(page)).toEqual([["01", 1_000, null], ["0102", 2_000, 0], ["ff", -2_000, 1]]);
    // Unspecified (0) is written as no reason (RFC 5280 §5.3.1), and hashed as none.
    const w = new CrlWriter([], 0);
    w.addPage(packRevokedRows([["0102", 0, 0]]));
    const d = new EntriesDigest();
    d.add(Uint8Array.of(1, 2), 0, 2, 0, null);
    expect(w.digest.hex()).toBe(d.hex());

    const writer = () => new CrlWriter([], 0);
    const bytes = (hex: string) => Buffer.from(hex, "hex");
    const entry = (serial: string, reason = "ff") => (serial.length / 2).toString(16).padStart(2, "0") + serial + "0000000065000000" + reason;
    const one = (hex: string, lastSerial: string | null = "01", count = 1) => writer().addPage({ count, lastSerial: lastSerial as SerialHex | null, bytes: bytes(hex) });
    expect(() => one(entry("01"))).not.toThrow();
    expect(() => one(entry("01") + entry("02"), "02")).toThrow(/holds/); // more octets than the count says
    expect(() => one(entry("01"), "01", 2)).toThrow(/bad serial/); // fewer
    expect(() => one("00" + "0000000065000000ff", null)).toThrow(/bad serial/); // no serial
    expect(() => one("ff" + "01".repeat(30))).toThrow(/bad serial/); // the store's mark of a malformed serial
    expect(() => one(entry("0001"), "0001")).toThrow(/bad serial/); // a leading zero octet
    expect(() => one(entry("01".repeat(21)), "01".repeat(21))).toThrow(/bad serial/);
    expect(() => one(entry("01", "07"))).toThrow(/bad reason 7/);
    expect(() => one(entry("01") + entry("01"), "01", 2)).toThrow(/out of order or listed twice/);
    expect(() => one(entry("02") + entry("01"), "01", 2)).toThrow(/out of order or listed twice/);
    expect(() => one(entry("01"), "02")).toThrow(/store says 02/); // a lastSerial that would skip entries
    const two = writer();
    two.addPage({ count: 1, lastSerial: "0102" as SerialHex, bytes: bytes(entry("0102")) });
    expect(() => two.addPage({ count: 1, lastSerial: "01" as SerialHex, bytes: bytes(entry("01")) })).toThrow(/out of order/); // across pages
    two.addPage({ count: 1, lastSerial: "0103" as SerialHex, bytes: bytes(entry("0103")) });
    expect(two.count).toBe(2);
  });
});
