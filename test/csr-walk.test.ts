/**
 * The CSR DER walk (src/x509/csr-walk.ts) against the ASN.1 object model it replaces on the hot
 * path: thousands of random requests (P-256, P-384, Ed25519, RSA-2048; subjects empty or not;
 * DNS/IP/URI SAN mixes or none), valid and broken in every way we could think of (tampered
 * signature, trailing garbage inside and outside, wrong lengths, flipped and dropped bytes,
 * unusual but legal encodings). For each: whatever the walk reads must equal what the object
 * model reads, field by field, and verifyCsr (walk, then object model for what the walk leaves
 * alone) must accept and refuse exactly as the object model alone does, with the same message.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CaError } from "../src/core/errors.js";
import { csrFieldsByObjectModel } from "../src/x509/csr-object-model.js";
import { walkCsr } from "../src/x509/csr-walk.js";
import { subjectKeyOf, verifyCsr, verifyCsrByObjectModel, verifyCsrOffThread } from "../src/x509/csr.js";
import type { CsrFields } from "../src/x509/csr-fields.js";
import { derBitString, derOid, derSequence, derTlv } from "../src/x509/der.js";
import { openssl } from "./harness/openssl.js";

// A seeded generator, so a failure can be replayed (the keys are random, the shapes are not).
let seed = 0x12c5a;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0), seed / 2 ** 32);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const chance = (p: number) => rnd() < p;

type KeyKind = "p256" | "p384" | "ed25519" | "rsa2048";
interface TestKey {
  kind: KeyKind;
  privateKey: KeyObject;
  spki: Uint8Array;
}

function newKey(kind: KeyKind): TestKey {
  const pair =
    kind === "p256"
      ? generateKeyPairSync("ec", { namedCurve: "P-256" })
      : kind === "p384"
        ? generateKeyPairSync("ec", { namedCurve: "P-384" })
        : kind === "ed25519"
          ? generateKeyPairSync("ed25519")
          : generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { kind, privateKey: pair.privateKey, spki: new Uint8Array(pair.publicKey.export({ type: "spki", format: "der" })) };
}

const SIG_ALGS: Record<KeyKind, { oid: string; hash: string | null; params: boolean }[]> = {
  p256: [
    { oid: "1.2.840.10045.4.3.2", hash: "sha256", params: false },
    { oid: "1.2.840.10045.4.3.3", hash: "sha384", params: false },
  ],
  p384: [{ oid: "1.2.840.10045.4.3.3", hash: "sha384", params: false }],
  ed25519: [{ oid: "1.3.101.112", hash: null, params: false }],
  rsa2048: [
    { oid: "1.2.840.113549.1.1.11", hash: "sha256", params: true },
    { oid: "1.2.840.113549.1.1.13", hash: "sha512", params: true },
  ],
};

const utf8 = (s: string) => Buffer.from(s, "utf8");
const NULL = Uint8Array.of(0x05, 0x00);

function atv(oid: string, tag: number, value: Uint8Array): Uint8Array {
  return derTlv(0x31, derSequence(derOid(oid), derTlv(tag, value)));
}

const DNS = ["web-1.internal", "API.Example.com", "a.b.c.d.e", "db-2.prod.internal.", "x", "-bad-.example", "has space.example", "10.0.0.1"];
const IPS = [Uint8Array.of(10, 0, 0, 1), Uint8Array.of(192, 168, 1, 254), Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1]), new Uint8Array(16)];
const URIS = ["spiffe://example.org/ns/default/sa/web", "https://svc.example/path", "web-1.internal", "urn:uuid:1234", "spiffe://td/x#frag"];
const CNS = ["web-1.internal", "10.0.0.7", "WEB-2.Internal", "", "not a host name", "spiffe://td/x", "::1"];

interface Shape {
  key: TestKey;
  subject: Uint8Array;
  attributes: Uint8Array[];
  alg: { oid: string; hash: string | null; params: boolean };
  /** Signs something else than the info (a wrong proof of possession). */
  wrongKey?: TestKey;
}

function generalNames(): Uint8Array {
  const parts: Uint8Array[] = [];
  const n = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) {
    const kind = pick(["dns", "dns", "ip", "uri"] as const);
    if (kind === "dns") parts.push(derTlv(0x82, utf8(pick(DNS))));
    else if (kind === "ip") parts.push(derTlv(0x87, pick(IPS)));
    else parts.push(derTlv(0x86, utf8(pick(URIS))));
  }
  return derSequence(...parts);
}

function extensionRequest(exts: Uint8Array[]): Uint8Array {
  return derSequence(derOid("1.2.840.113549.1.9.14"), derTlv(0x31, derSequence(...exts)));
}

function sanExtension(names: Uint8Array, critical = false): Uint8Array {
  return derSequence(derOid("2.5.29.17"), ...(critical ? [Uint8Array.of(0x01, 0x01, 0xff)] : []), derTlv(0x04, names));
}

function randomShape(keys: Record<KeyKind, TestKey[]>): Shape {
  const kind = pick(["p256", "p256", "p384", "ed25519", "rsa2048"] as const);
  const key = pick(keys[kind]);
  const rdns: Uint8Array[] = [];
  if (!chance(0.3)) {
    if (chance(0.5)) rdns.push(atv("2.5.4.10", pick([0x0c, 0x13]), utf8("Fleet Org")));
    if (chance(0.85)) rdns.push(atv("2.5.4.3", pick([0x0c, 0x13, 0x16]), utf8(pick(CNS))));
    if (chance(0.3)) rdns.push(atv("2.5.4.11", 0x0c, utf8("ops")));
  }
  const exts: Uint8Array[] = [];
  if (chance(0.7)) exts.push(sanExtension(generalNames(), chance(0.2)));
  if (chance(0.2)) exts.push(derSequence(derOid("2.5.29.15"), Uint8Array.of(0x01, 0x01, 0xff), derTlv(0x04, Uint8Array.of(0x03, 0x02, 0x05, 0xa0))));
  return {
    key,
    subject: derSequence(...rdns),
    attributes: exts.length || chance(0.5) ? [extensionRequest(exts)] : [],
    alg: pick(SIG_ALGS[kind]),
  };
}

function build(shape: Shape, tweakInfo?: (info: Uint8Array) => Uint8Array): Uint8Array {
  let info = derSequence(Uint8Array.of(0x02, 0x01, 0x00), shape.subject, shape.key.spki, derTlv(0xa0, Buffer.concat(shape.attributes)));
  if (tweakInfo) info = tweakInfo(info);
  const signer = shape.wrongKey ?? shape.key;
  const sig = sign(shape.alg.hash, info, signer.privateKey);
  return derSequence(info, derSequence(derOid(shape.alg.oid), ...(shape.alg.params ? [NULL] : [])), derBitString(sig));
}

/** One defect (or none) applied to an otherwise valid request. */
const MUTATIONS: Record<string, (der: Uint8Array, shape: Shape) => Uint8Array> = {
  none: (d) => d,
  "tampered signature": (d) => flip(d, d.length - 1 - Math.floor(rnd() * 8)),
  "tampered info": (d) => flip(d, 8 + Math.floor(rnd() * 40)),
  "random byte": (d) => flip(d, Math.floor(rnd() * d.length)),
  "trailing garbage outside": (d) => Buffer.concat([d, randomBytes(1 + Math.floor(rnd() * 4))]),
  "trailing garbage inside": (d) => rewrapOuter(d, randomBytes(1 + Math.floor(rnd() * 4))),
  "truncated": (d) => d.subarray(0, Math.floor(rnd() * d.length)),
  "length off by one": (d) => bumpLength(d),
  "non-minimal outer length": (d) => nonMinimalOuter(d),
  "trailing garbage in info": (_d, s) => build(s, (info) => rewrapOuter(info, Uint8Array.of(0x05, 0x00))),
};

function flip(d: Uint8Array, i: number): Uint8Array {
  const out = Uint8Array.from(d);
  out[i] = out[i]! ^ (1 << Math.floor(rnd() * 8));
  return out;
}

/** The outer SEQUENCE's content with `extra` appended, re-wrapped with a correct length. */
function rewrapOuter(d: Uint8Array, extra: Uint8Array): Uint8Array {
  const lenOctets = d[1]! & 0x80 ? d[1]! & 0x7f : 0;
  return derTlv(d[0]!, Buffer.concat([d.subarray(2 + lenOctets), extra]));
}

/** Some TLV length octet inside the request, one more or one less. */
function bumpLength(d: Uint8Array): Uint8Array {
  const out = Uint8Array.from(d);
  const candidates: number[] = [];
  for (let i = 1; i < out.length; i++) if ([0x30, 0x31, 0x02, 0x03, 0x04, 0x06, 0x0c, 0x13, 0x82, 0x86, 0x87, 0xa0].includes(out[i - 1]!)) candidates.push(i);
  const i = pick(candidates);
  out[i] = (out[i]! + (chance(0.5) ? 1 : 0xff)) & 0xff;
  return out;
}

/** BER allows a length in more octets than needed; DER does not (X.690 §10.1). */
function nonMinimalOuter(d: Uint8Array): Uint8Array {
  const lenOctets = d[1]! & 0x80 ? d[1]! & 0x7f : 0;
  const content = d.subarray(2 + lenOctets);
  return Buffer.concat([Uint8Array.of(0x30, 0x84, content.length >>> 24, (content.length >>> 16) & 0xff, (content.length >>> 8) & 0xff, content.length & 0xff), content]);
}

/** Valid but unusual requests: the object model's cases, or traps for a lenient walk. */
function unusual(keys: Record<KeyKind, TestKey[]>): [string, Uint8Array][] {
  const k = keys.p256[0]!;
  const ecdsa = SIG_ALGS.p256[0]!;
  const base = (over: Partial<Shape>) => build({ key: k, subject: derSequence(), attributes: [extensionRequest([sanExtension(derSequence(derTlv(0x82, utf8("web-1.internal"))))])], alg: ecdsa, ...over });
  const sanOnly = (names: Uint8Array) => base({ attributes: [extensionRequest([sanExtension(names)])] });
  return [
    ["email SAN", sanOnly(derSequence(derTlv(0x82, utf8("a.example")), derTlv(0x81, utf8("a@b.c"))))],
    ["otherName SAN", sanOnly(derSequence(derTlv(0xa0, derSequence(derOid("1.2.3.4"), derTlv(0xa0, derTlv(0x0c, utf8("x")))))))],
    ["IP SAN of 8 octets", sanOnly(derSequence(derTlv(0x87, new Uint8Array(8))))],
    ["IP SAN of 5 octets", sanOnly(derSequence(derTlv(0x87, new Uint8Array(5))))],
    ["empty DNS SAN", sanOnly(derSequence(derTlv(0x82, new Uint8Array(0))))],
    ["empty GeneralNames", sanOnly(derSequence())],
    ["non-ASCII DNS SAN", sanOnly(derSequence(derTlv(0x82, utf8("wéb.example"))))],
    ["SAN value not a SEQUENCE", sanOnly(derTlv(0x04, utf8("x")))],
    ["SAN with trailing data", sanOnly(Buffer.concat([derSequence(derTlv(0x82, utf8("a.example"))), NULL]))],
    ["two SAN extensions", base({ attributes: [extensionRequest([sanExtension(derSequence(derTlv(0x82, utf8("a.example")))), sanExtension(derSequence(derTlv(0x86, utf8("spiffe://td/a"))))])] })],
    ["no attributes at all", build({ key: k, subject: derSequence(), attributes: [], alg: ecdsa }, (info) => rewrapWithout(info))],
    ["challengePassword attribute", base({ attributes: [derSequence(derOid("1.2.840.113549.1.9.7"), derTlv(0x31, derTlv(0x0c, utf8("secret"))))] })],
    ["BMPString CN", base({ subject: derSequence(atv("2.5.4.3", 0x1e, Buffer.from("web-1.internal", "utf16le").swap16())) })],
    ["non-ASCII UTF8 CN", base({ subject: derSequence(atv("2.5.4.3", 0x0c, utf8("wéb-1.internal"))) })],
    ["INTEGER as CN", base({ subject: derSequence(atv("2.5.4.3", 0x02, Uint8Array.of(5))) })],
    ["empty RDN", base({ subject: derSequence(derTlv(0x31, new Uint8Array(0))) })],
    ["multi-valued RDN", base({ subject: derSequence(derTlv(0x31, Buffer.concat([derSequence(derOid("2.5.4.10"), derTlv(0x0c, utf8("o"))), derSequence(derOid("2.5.4.3"), derTlv(0x0c, utf8("web-1.internal")))]))) })],
    ["two CNs", base({ subject: derSequence(atv("2.5.4.3", 0x0c, utf8("a.example")), atv("2.5.4.3", 0x0c, utf8("b.example"))) })],
    ["SHA-1 signature", base({ alg: { oid: "1.2.840.10045.4.1", hash: "sha1", params: false } })],
    ["RSA algorithm on an EC key", base({ alg: { oid: "1.2.840.113549.1.1.11", hash: "sha256", params: true } })],
    ["ECDSA algorithm with NULL parameters", base({ alg: { ...ecdsa, params: true } })],
    ["signed by another key", base({ wrongKey: keys.p256[1]! })],
    ["version 1", build({ key: k, subject: derSequence(), attributes: [], alg: ecdsa }, (info) => setVersion(info, 1))],
    ["critical BOOLEAN 0x01", base({ attributes: [extensionRequest([derSequence(derOid("2.5.29.17"), Uint8Array.of(0x01, 0x01, 0x01), derTlv(0x04, derSequence(derTlv(0x82, utf8("a.example")))))])] })],
    ["non-minimal OID", base({ subject: derSequence(derTlv(0x31, derSequence(derTlv(0x06, Uint8Array.of(0x55, 0x04, 0x80, 0x03)), derTlv(0x0c, utf8("x"))))) })],
    ["signature with unused bits", (() => {
      const d = base({});
      const out = Uint8Array.from(d);
      // the BIT STRING's unused-bits octet: find it from the end (sig length + 1)
      const sigStart = findLast(out, 0x03);
      out[sigStart + 2] = 1;
      return out;
    })()],
  ];
}

function rewrapWithout(info: Uint8Array): Uint8Array {
  // drops the trailing [0] attributes (a0 00) that build() always writes
  const lenOctets = info[1]! & 0x80 ? info[1]! & 0x7f : 0;
  const content = info.subarray(2 + lenOctets);
  return derTlv(0x30, content.subarray(0, content.length - 2));
}

function setVersion(info: Uint8Array, v: number): Uint8Array {
  const out = Uint8Array.from(info);
  const lenOctets = out[1]! & 0x80 ? out[1]! & 0x7f : 0;
  out[2 + lenOctets + 2] = v;
  return out;
}

function findLast(d: Uint8Array, tag: number): number {
  // the signature BIT STRING is the last TLV: walk the outer SEQUENCE's three children
  const lenOctets = d[1]! & 0x80 ? d[1]! & 0x7f : 0;
  let i = 2 + lenOctets;
  let last = -1;
  while (i < d.length) {
    last = i;
    const l = d[i + 1]!;
    const n = l & 0x80 ? l & 0x7f : 0;
    let len = n ? 0 : l;
    for (let j = 0; j < n; j++) len = len * 256 + d[i + 2 + j]!;
    i += 2 + n + len;
  }
  expect(d[last]).toBe(tag);
  return last;
}

type Outcome = { ok: unknown } | { error: string; message: string };

function outcome(f: () => unknown): Outcome {
  try {
    return { ok: f() };
  } catch (e) {
    if (e instanceof CaError) return { error: e.code, message: e.message };
    throw e;
  }
}

function fieldsView(f: CsrFields) {
  const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
  return { info: hex(f.info), spki: hex(f.spki), alg: f.signatureAlgorithm, sig: hex(f.signature), cn: f.commonName, sans: [...f.sanGroups] };
}

/** Every request cross-checked, for the off-thread verifier's comparison at the end. */
const checked: { name: string; der: Uint8Array }[] = [];
const stats = { total: 0, walked: 0, accepted: 0, refused: 0, ordinaryValid: 0, ordinaryValidWalked: 0 };

/** The property: the walk reads what the object model reads, and verifyCsr decides as it does. */
function crossCheck(name: string, der: Uint8Array, ordinaryValid = false) {
  stats.total++;
  checked.push({ name, der });
  const walked = walkCsr(der);
  if (walked) {
    stats.walked++;
    const model = outcome(() => fieldsView(csrFieldsByObjectModel(der)));
    expect(model, name).toEqual({ ok: fieldsView(walked) });
  }
  const ours = outcome(() => verifyCsr(der));
  const reference = outcome(() => verifyCsrByObjectModel(der));
  expect(ours, name).toEqual(reference);
  if ("ok" in ours) stats.accepted++;
  else {
    stats.refused++;
    expect(ours.error, name).toBe("bad_csr");
  }
  if (ordinaryValid) {
    stats.ordinaryValid++;
    if (walked) stats.ordinaryValidWalked++;
  }
}

describe("CSR DER walk vs the object model", () => {
  const keys: Record<KeyKind, TestKey[]> = {
    p256: Array.from({ length: 6 }, () => newKey("p256")),
    p384: Array.from({ length: 3 }, () => newKey("p384")),
    ed25519: Array.from({ length: 3 }, () => newKey("ed25519")),
    rsa2048: Array.from({ length: 2 }, () => newKey("rsa2048")),
  };
  const dir = mkdtempSync(join(tmpdir(), "fleetca-csr-walk-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("agree on every field and on accept/reject for 2,000 random requests", () => {
    const names = Object.keys(MUTATIONS);
    for (let i = 0; i < 2000; i++) {
      const shape = randomShape(keys);
      const valid = build(shape);
      // Every shape is checked as built; a defect is added to half of them.
      crossCheck(`#${i} valid ${shape.key.kind}`, valid, true);
      if (i % 2 === 1) {
        const m = pick(names.slice(1));
        crossCheck(`#${i} ${m} ${shape.key.kind}`, MUTATIONS[m]!(valid, shape));
      }
    }
    // The walk is the hot path: every ordinary request must take it (nothing falls back).
    expect(stats.ordinaryValidWalked).toBe(stats.ordinaryValid);
    expect(stats.accepted).toBeGreaterThan(300);
    expect(stats.refused).toBeGreaterThan(300);
  });

  it("agree on unusual and hostile encodings", () => {
    for (const [name, der] of unusual(keys)) crossCheck(name, der);
  });

  it("agree on requests made by openssl", () => {
    const cases: [string, string[]][] = [
      ["p256-cn", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-subj", "/CN=web-1.internal"]],
      ["p384-sans", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-subj", "/", "-addext", "subjectAltName=DNS:a.example,IP:10.1.2.3,IP:2001:db8::1,URI:spiffe://td/ns/x"]],
      ["ed25519", ["-newkey", "ed25519", "-subj", "/O=Org/CN=10.0.0.9"]],
      ["rsa2048-sha512", ["-newkey", "rsa:2048", "-sha512", "-subj", "/C=DE/O=Org/CN=web-2.internal", "-addext", "subjectAltName=DNS:web-2.internal"]],
      ["challenge", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-subj", "/CN=web-1.internal", "-addext", "keyUsage=critical,digitalSignature"]],
    ];
    for (const [name, args] of cases) {
      const out = join(dir, `${name}.csr`);
      openssl(["req", "-new", ...args, "-nodes", "-keyout", join(dir, `${name}.key`), "-outform", "DER", "-out", out]);
      const der = new Uint8Array(readFileSync(out));
      expect(walkCsr(der), name).not.toBeNull();
      crossCheck(name, der, true);
    }
  });

  it("verifies off the event loop exactly as on it, for every request above", async () => {
    expect(checked.length).toBeGreaterThan(2000);
    for (const { name, der } of checked) {
      let off: Outcome;
      try {
        off = { ok: await verifyCsrOffThread(der) };
      } catch (e) {
        if (!(e instanceof CaError)) throw e;
        off = { error: e.code, message: e.message };
      }
      expect(off, name).toEqual(outcome(() => verifyCsr(der)));
    }
  });
});

describe("subject key import", () => {
  const decoderImport = (spki: Uint8Array) => createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });

  it("imports P-256 and Ed25519 keys (the JWK path) as the DER decoder does", () => {
    for (let i = 0; i < 200; i++) {
      const k = newKey(i % 2 ? "p256" : "ed25519");
      const { key, subjectKey } = subjectKeyOf(k.spki);
      expect(Buffer.from(key.export({ type: "spki", format: "der" })).equals(Buffer.from(k.spki))).toBe(true);
      expect(key.asymmetricKeyType).toBe(decoderImport(k.spki).asymmetricKeyType);
      expect(subjectKey).toEqual(i % 2 ? { kind: "ec", curve: "P-256" } : { kind: "ed25519" });
    }
  });

  it("refuses a P-256 point off the curve as the decoder does", () => {
    let refused = 0;
    for (let i = 0; i < 200; i++) {
      const spki = new Uint8Array(newKey("p256").spki);
      spki[27 + (i % 64)]! ^= 1 + (i % 255);
      let decoder = true;
      try {
        decoderImport(spki);
      } catch {
        decoder = false;
      }
      const ours = outcome(() => subjectKeyOf(spki).subjectKey);
      expect("ok" in ours, `point ${i}`).toBe(decoder);
      if (!decoder) {
        refused++;
        expect(ours).toEqual({ error: "bad_csr", message: "csr public key is malformed or of an unknown type" });
      }
    }
    expect(refused).toBeGreaterThan(190);
  });
});
