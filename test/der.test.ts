import { describe, expect, it } from "vitest";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Time } from "@peculiar/asn1-x509";
import { DerReader, DerError, TAG, readOid, readSmallUint, readTime } from "../src/x509/der-reader.js";
import { derOid, derSmallUint, derTime, derUnsignedInteger, derSequence, derTlv } from "../src/x509/der.js";

describe("DER writer and reader", () => {
  it("encodes times as RFC 5280 wants and as the ASN.1 library does", () => {
    for (const iso of ["2026-12-01T14:40:19Z", "2049-12-31T23:59:59Z", "2050-01-01T00:00:00Z", "1999-01-02T03:04:05Z"]) {
      const d = new Date(iso);
      const ours = derTime(d);
      expect(Buffer.from(ours).toString("hex")).toBe(Buffer.from(AsnConvert.serialize(new Time(d))).toString("hex"));
      const r = new DerReader(ours);
      const t = r.next();
      expect(readTime(t.tag, r.content(t)).toISOString()).toBe(d.toISOString());
    }
  });

  it("writes shortest-form definite lengths at every boundary (X.690 §8.1.3.5), header and parts in order", () => {
    for (const n of [0, 1, 127, 128, 255, 256, 65_535, 65_536, 16_777_215, 16_777_216]) {
      const content = Buffer.alloc(n, 0xab);
      const tlv = Buffer.from(derTlv(0x04, content));
      const r = new DerReader(tlv);
      const t = r.next();
      expect(t.tag, `length ${n}`).toBe(0x04);
      expect(Buffer.from(r.content(t)).equals(content), `length ${n}`).toBe(true);
      // Shortest form: one octet below 128, else 0x80|k and k octets with no leading zero.
      const k = n < 0x80 ? 0 : Math.ceil(Math.log2(n + 1) / 8);
      expect(tlv.length, `length ${n}`).toBe(2 + k + n);
      if (k > 0) expect(tlv[1], `length ${n}`).toBe(0x80 | k);
      const split = [content.subarray(0, n >> 1), Buffer.from([]), content.subarray(n >> 1)];
      expect(Buffer.from(derSequence(...split)).equals(Buffer.concat([Buffer.of(0x30), tlv.subarray(1, 1 + (tlv.length - n - 1)), content])), `sequence ${n}`).toBe(true);
    }
  });

  it("round-trips integers and OIDs", () => {
    for (const n of [0, 1, 127, 128, 255, 256, 65535, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
      const r = new DerReader(derSmallUint(n));
      expect(readSmallUint(r.content(r.expect(TAG.INTEGER, "n")))).toBe(n);
    }
    expect(Buffer.from(derUnsignedInteger(Uint8Array.of(0x80, 1))).toString("hex")).toBe("0203008001");
    expect(Buffer.from(derUnsignedInteger(Uint8Array.of(0, 0, 0x7f))).toString("hex")).toBe("02017f");
    for (const oid of ["2.5.29.20", "1.2.840.10045.4.3.2", "1.3.6.1.5.5.7.48.1.2", "2.999.3"]) {
      const r = new DerReader(derOid(oid));
      expect(readOid(r.content(r.expect(TAG.OID, "oid")))).toBe(oid);
    }
  });

  it("walks long structures without a node cap and refuses what DER does not allow", () => {
    const items = Array.from({ length: 20_000 }, (_, i) => derSmallUint(i));
    const r = new DerReader(derSequence(...items));
    const seq = r.inside(r.expect(TAG.SEQUENCE, "seq"));
    let count = 0;
    while (!seq.done) expect(readSmallUint(seq.content(seq.expect(TAG.INTEGER, "i")))).toBe(count++);
    expect(count).toBe(20_000);
    expect(() => new DerReader(Uint8Array.of(0x30, 0x81, 0x05, 0, 0, 0, 0, 0)).next()).toThrow(DerError); // non-minimal length
    expect(() => new DerReader(Uint8Array.of(0x30, 0x05, 0)).next()).toThrow(DerError); // past the end
    expect(() => new DerReader(Uint8Array.of(0x30, 0x80, 0, 0)).next()).toThrow(DerError); // indefinite
    expect(() => readSmallUint(Uint8Array.of(0, 1))).toThrow(DerError);
    const outer = derTlv(0x30, Uint8Array.of(2, 1, 1, 0xff));
    const rr = new DerReader(outer);
    expect(() => rr.inside(rr.next()).next() && rr.inside(new DerReader(outer).next()).finish("x")).toThrow(DerError);
  });
});
