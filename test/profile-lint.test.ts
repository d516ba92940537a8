import { describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { TBSCertificate } from "@peculiar/asn1-x509";
import { SIGNATURE_SCHEMES } from "../src/core/key-type.js";
import { sansFromList } from "../src/core/sans.js";
import { describeTbs, keyIdentifier, type CertificateInfo } from "../src/x509/certificate-info.js";
import { issuedMatchesRequest, lintLeaf, type LeafLintContext } from "../src/x509/lint.js";
import { leafTbs, nameOf } from "../src/x509/profile.js";
import { randomSerialContent } from "../src/issuance/serial.js";

/** The lint is the last gate before a signature: each rule must actually refuse its defect. */
describe("leaf lint", () => {
  const spki = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" });
  const issuerKeyId = new Uint8Array(20).fill(7);
  const now = Date.now();
  const sans = sansFromList(["web-1.internal", "10.0.0.1", "spiffe://example.org/web"]);
  const tbs = leafTbs({
    serialContent: randomSerialContent(),
    issuer: { subject: nameOf({ cn: "Test Intermediate" }), keyId: issuerKeyId, scheme: SIGNATURE_SCHEMES["ecdsa-p256"] },
    subjectSpki: spki,
    subjectKeyId: keyIdentifier(spki),
    subjectKey: { kind: "ec", curve: "P-256" },
    sans,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
    urls: { crl: "http://ca/crl/x", ocsp: "http://ca/ocsp", caIssuers: "http://ca/intermediate.crt" },
  });
  const good = describeTbs(AsnConvert.parse(AsnConvert.serialize(tbs), TBSCertificate));
  const ctx: LeafLintContext = {
    issuerNotBefore: new Date(now - 86400_000),
    issuerNotAfter: new Date(now + 86400_000),
    issuerKeyId,
    authorizedSans: sans,
    maxLifetimeMs: 2 * 3600_000,
    subjectSpki: spki,
  };

  it("passes the profile as built", () => {
    expect(lintLeaf(good, ctx)).toEqual([]);
    expect(good.subjectCommonName).toBe("web-1.internal");
  });

  const defects: Array<[string, Partial<CertificateInfo> | ((c: LeafLintContext) => LeafLintContext), RegExp]> = [
    ["a CA leaf", { isCA: true }, /must not be a CA/],
    ["a negative serial", { serialContent: Uint8Array.of(0x80, 1) }, /positive/],
    ["a 21-octet serial", { serialContent: new Uint8Array(21).fill(1) }, /1\.\.20 octets/],
    ["a zero serial", { serialContent: Uint8Array.of(0) }, /zero/],
    ["notAfter past the issuer", { notAfter: new Date(now + 2 * 86400_000) }, /issuer's validity/],
    ["inverted validity", { notBefore: new Date(now + 7200_000) }, /precede/],
    ["too long a lifetime", (c) => ({ ...c, maxLifetimeMs: 60_000 }), /maximum/],
    ["an unauthorised SAN", (c) => ({ ...c, authorizedSans: sansFromList(["web-1.internal"]) }), /not authorised/],
    ["no SAN", { sans: { dns: [], ip: [], uri: [] }, subjectCommonName: null }, /no subject alternative name/],
    ["an empty subject with non-critical SAN", { subjectIsEmpty: true, subjectCommonName: null, sanCritical: false }, /critical SAN/],
    ["a CN that is not a SAN", { subjectCommonName: "other.internal" }, /CN is not/],
    ["keyCertSign", { keyUsage: 1 | 32 }, /key usage beyond/],
    ["codeSigning EKU", { extKeyUsages: ["1.3.6.1.5.5.7.3.3"] }, /extended key usage/],
    ["a wrong AKI", { authorityKeyId: new Uint8Array(20) }, /authority key identifier/],
    ["another public key", (c) => ({ ...c, subjectSpki: new Uint8Array(91) }), /public key differs/],
    ["a duplicate extension", { extensionOids: [...good.extensionOids, "2.5.29.17"] }, /duplicate/],
    ["an otherName SAN", { otherSanCount: 1 }, /other than DNS/],
  ];

  it.each(defects)("refuses %s", (_name, change, expected) => {
    const info = typeof change === "function" ? good : { ...good, ...change };
    const c = typeof change === "function" ? change(ctx) : ctx;
    expect(lintLeaf(info, c).join("; ")).toMatch(expected);
  });

  it("re-checks the issued certificate against the request", () => {
    expect(issuedMatchesRequest(good, { spki, sans })).toEqual([]);
    expect(issuedMatchesRequest(good, { spki, sans: sansFromList(["web-1.internal"]) })).toContain("issued SANs differ from the request");
    expect(issuedMatchesRequest({ ...good, isCA: true }, { spki, sans })).toContain("issued certificate is a CA");
  });
});
