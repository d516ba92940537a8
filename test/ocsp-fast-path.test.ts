import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync, randomBytes, sign as cryptoSign, verify as cryptoVerify, createPublicKey, type KeyObject } from "node:crypto";
import { request as httpRequest } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { AsnConvert } from "@peculiar/asn1-schema";
import { BasicOCSPResponse, OCSPResponse, OCSPResponseStatus } from "@peculiar/asn1-ocsp";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { startInProcess } from "./harness/in-process.js";
import { eventually } from "./harness/eventually.js";
import { opensslAll } from "./harness/openssl.js";
import { ManualClock } from "../src/core/clock.js";
import { SIGNATURE_SCHEMES } from "../src/core/key-type.js";
import type { SerialHex } from "../src/core/serial.js";
import type { Daemon } from "../src/cli/daemon.js";
import { bindIssuer } from "../src/issuance/issuer.js";
import { serializeTbs, signTbs } from "../src/issuance/sign-tbs.js";
import { OcspIssuer } from "../src/revocation/ocsp/ocsp-issuer.js";
import { ExactRequestMap, requestKey } from "../src/revocation/ocsp/exact-request-map.js";
import type { PresignedResponse } from "../src/revocation/ocsp/ocsp-cache.js";
import { parseOcspRequest } from "../src/revocation/ocsp/ocsp-request.js";
import { parseOcspRequestWithObjectModel } from "../src/revocation/ocsp/ocsp-request-model.js";
import { encodeResponseData, signOcspResponse, type SingleAnswer } from "../src/revocation/ocsp/ocsp-response.js";
import { responseDataWithObjectModel } from "../src/revocation/ocsp/ocsp-response-model.js";
import type { Signer } from "../src/signing/signer.js";
import { keyIdentifier } from "../src/x509/certificate-info.js";
import { toPem } from "../src/x509/pem.js";
import { caTbs, nameOf } from "../src/x509/profile.js";

const HOUR = 3_600_000;

/** The Signer port with a counter in front: every signature the CA makes goes through it. */
class CountingSigner implements Signer {
  signatures = 0;
  constructor(private readonly inner: Signer) {}
  get keyType() {
    return this.inner.keyType;
  }
  get publicKeySpki() {
    return this.inner.publicKeySpki;
  }
  sign(data: Uint8Array): Promise<Uint8Array> {
    this.signatures++;
    return this.inner.sign(data);
  }
}

/** An in-memory P-256 signer for encoder checks that need no daemon. */
class MemorySigner implements Signer {
  readonly keyType = "ecdsa-p256" as const;
  readonly publicKeySpki: Uint8Array;
  readonly #key: KeyObject;
  constructor() {
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.publicKeySpki = publicKey.export({ type: "spki", format: "der" });
    this.#key = privateKey;
  }
  async sign(data: Uint8Array): Promise<Uint8Array> {
    return cryptoSign("sha256", data, { key: this.#key, dsaEncoding: "der" });
  }
}

/** POST /ocsp from a given local address: the responder tells clients apart by remote address. */
function postFrom(publicUrl: string, der: Uint8Array, localAddress: string): Promise<{ status: number; der: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${publicUrl}/ocsp`, { method: "POST", localAddress, agent: false, headers: { "content-type": "application/ocsp-request" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, der: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end(Buffer.from(der));
  });
}

function decode(der: Uint8Array): { status: OCSPResponseStatus; basic: BasicOCSPResponse | null } {
  const r = AsnConvert.parse(der, OCSPResponse);
  return { status: r.responseStatus, basic: r.responseBytes ? AsnConvert.parse(r.responseBytes.response.buffer, BasicOCSPResponse) : null };
}

/** A DER OCSPRequest as `openssl ocsp -reqout` writes it. */
function opensslRequest(dir: string, issuerPath: string, subject: string[], extra: string[] = []): Buffer {
  const out = join(dir, `req-${randomBytes(4).toString("hex")}.der`);
  const r = opensslAll(["ocsp", ...extra, "-issuer", issuerPath, ...subject, "-reqout", out]);
  expect(r.code, r.out).toBe(0);
  return readFileSync(out);
}

describe("DER-direct OCSP encoding and parsing, against the object model", () => {
  let dir: string;
  let issuer: OcspIssuer;
  let caPath: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fleetca-ocsp-der-"));
    const signer = new MemorySigner();
    const now = Date.now();
    const tbs = caTbs({
      serialContent: Uint8Array.of(1),
      subject: nameOf({ o: "test", cn: "DER test CA" }),
      subjectSpki: signer.publicKeySpki,
      subjectKeyId: keyIdentifier(signer.publicKeySpki),
      selfScheme: SIGNATURE_SCHEMES["ecdsa-p256"],
      pathLen: 0,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + 1000 * HOUR),
    });
    const der = await signTbs(signer, serializeTbs(tbs));
    issuer = new OcspIssuer(await bindIssuer(der, signer));
    caPath = join(dir, "ca.pem");
    writeFileSync(caPath, toPem(der, "CERTIFICATE"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const statuses: [string, SingleAnswer["answer"]][] = [
    ["good", { status: "good" }],
    ["revoked with a reason", { status: "revoked", revokedAt: new Date("2026-05-04T03:02:01Z"), reason: 1 }],
    ["revoked, unspecified", { status: "revoked", revokedAt: new Date("2026-05-04T03:02:01Z"), reason: 0 }],
    ["unknown", { status: "unknown" }],
  ];

  it.each(statuses.flatMap(([name, answer]) => [[`${name}, no nonce`, answer, false] as const, [`${name}, with a nonce`, answer, true] as const]))(
    "writes the same ResponseData bytes as the object model: %s",
    async (_name, answer, withNonce) => {
      const req = parseOcspRequest(opensslRequest(dir, caPath, ["-serial", "0x5a5a5a5a5a5a5a5a"], withNonce ? [] : ["-no_nonce"]));
      if (!req.ok) throw new Error(req.reason);
      const { certIds, nonce } = req.query;
      const answers: SingleAnswer[] = [{ certIdDer: certIds[0]!.der, answer, thisUpdate: new Date("2026-06-01T00:00:00Z"), nextUpdate: new Date("2026-06-01T04:00:00Z") }];
      const producedAt = new Date("2026-06-01T00:00:00Z");
      const fast = encodeResponseData(issuer.responderKeyHash, answers, producedAt, nonce);
      expect(Buffer.from(fast).toString("hex")).toBe(Buffer.from(responseDataWithObjectModel(issuer, answers, producedAt, nonce)).toString("hex"));

      // The signed response parses with the object model to the same data, and its signature verifies.
      const signed = await signOcspResponse(issuer, answers, producedAt, nonce);
      const d = decode(signed);
      expect(d.status).toBe(OCSPResponseStatus.successful);
      const tbs = new Uint8Array(AsnConvert.serialize(d.basic!.tbsResponseData));
      expect(Buffer.from(tbs).equals(Buffer.from(fast))).toBe(true);
      const spki = createPublicKey({ key: Buffer.from(issuer.issuer.signer.publicKeySpki), format: "der", type: "spki" });
      expect(cryptoVerify("sha256", tbs, { key: spki, dsaEncoding: "der" }, Buffer.from(d.basic!.signature))).toBe(true);
      expect(d.basic!.tbsResponseData.responseExtensions?.length ?? 0).toBe(withNonce ? 1 : 0);
    },
  );

  it("writes several SingleResponses as the object model does", () => {
    const ids = [1, 2, 3].map((n) => issuer.sha1CertId(n.toString(16).padStart(2, "0") as SerialHex).der);
    const answers: SingleAnswer[] = ids.map((certIdDer, i) => ({ certIdDer, answer: statuses[i]![1], thisUpdate: new Date(0), nextUpdate: new Date(4 * HOUR) }));
    const at = new Date("2030-01-01T00:00:00Z");
    expect(Buffer.from(encodeResponseData(issuer.responderKeyHash, answers, at, null)).equals(Buffer.from(responseDataWithObjectModel(issuer, answers, at, null)))).toBe(true);
  });

  it("builds the SHA-1 CertID byte for byte as openssl sends it", () => {
    for (const serial of ["01", "7f", "80", "00ff", "5a".repeat(16), "ff".repeat(20)]) {
      const req = parseOcspRequest(opensslRequest(dir, caPath, ["-serial", `0x${serial}`], ["-no_nonce"]));
      if (!req.ok) throw new Error(req.reason);
      const q = req.query.certIds[0]!;
      expect(Buffer.from(issuer.sha1CertId(q.serial!).der).toString("hex")).toBe(Buffer.from(q.der).toString("hex"));
    }
  });

  it("parses requests exactly as the object model does, and refuses the same ones", () => {
    const good = [
      opensslRequest(dir, caPath, ["-serial", "0x01"], ["-no_nonce"]),
      opensslRequest(dir, caPath, ["-serial", "0x01"]),
      opensslRequest(dir, caPath, ["-serial", "0x00112233445566778899aabbccddeeff"], ["-sha256"]),
      opensslRequest(dir, caPath, ["-serial", "0x01", "-serial", "0x02", "-serial", "0x8000"], ["-no_nonce"]),
    ];
    for (const der of good) {
      const fast = parseOcspRequest(der);
      expect(fast.ok).toBe(true);
      expect(fast).toEqual(parseOcspRequestWithObjectModel(der));
    }
    const bad = [Buffer.from("garbage"), Buffer.alloc(0), Buffer.from("3003020101", "hex"), Buffer.concat([good[0]!, Buffer.of(0)]), good[0]!.subarray(0, good[0]!.length - 1)];
    for (const der of bad) {
      expect(parseOcspRequest(der).ok).toBe(false);
      expect(parseOcspRequestWithObjectModel(der).ok).toBe(false);
    }
  });
});

describe("ExactRequestMap", () => {
  it("does not remember requests longer than a single-CertID request can be", () => {
    const map = new ExactRequestMap(10);
    const e = { refreshAt: new Date(Date.now() + HOUR) } as PresignedResponse;
    map.remember(requestKey(Buffer.alloc(2000, 0x30)), e);
    expect(map.size).toBe(0);
    map.remember(requestKey(Buffer.alloc(100, 0x30)), e);
    expect(map.get(requestKey(Buffer.alloc(100, 0x30)), Date.now())).toBe(e);
    e.retired = true; // replaced in the pre-signed cache
    expect(map.get(requestKey(Buffer.alloc(100, 0x30)), Date.now())).toBeUndefined();
  });
});

describe("OCSP on-demand signing is bounded per client (real daemon, signatures counted at the Signer port)", () => {
  const ws = new CaWorkspace({ extraConfig: "ocsp: { rateLimit: { perSecond: 1, burst: 3, totalPerSecond: 1000 } }\n" });
  const clock = new ManualClock();
  let daemon: Daemon;
  let counter: CountingSigner;
  let ca: CaClient;
  let leaf: Issued;

  beforeAll(async () => {
    ({ daemon } = await startInProcess(ws, clock, { wrapSigner: (s) => (counter = new CountingSigner(s)) }));
    ca = await new CaClient(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`]).init();
    leaf = await ca.issue("burst-1");
    await daemon.tick(); // the pre-signer signs the new certificate's answer into the store
  });
  afterAll(async () => {
    await daemon?.close();
    ws.remove();
  });

  const nonceOf = (der: Uint8Array) => decode(der).basic!.tbsResponseData.responseExtensions?.[0];

  it("answers a nonce burst beyond the bucket from the pre-signed cache without the nonce; other clients are unaffected", async () => {
    const plain = await postFrom(daemon.publicUrl, opensslRequest(ws.dir, ca.intermediatePath, ["-cert", leaf.certPath], ["-no_nonce"]), "127.0.0.1");
    expect(decode(plain.der).basic!.tbsResponseData.responses[0]!.certStatus.good).toBeNull();

    const before = counter.signatures;
    const answers = [];
    for (let i = 0; i < 10; i++) {
      answers.push(await postFrom(daemon.publicUrl, opensslRequest(ws.dir, ca.intermediatePath, ["-cert", leaf.certPath]), "127.0.0.1"));
    }
    expect(counter.signatures - before).toBe(3); // the burst, and not one more
    for (const [i, a] of answers.entries()) {
      const d = decode(a.der);
      expect(a.status).toBe(200);
      expect(d.status).toBe(OCSPResponseStatus.successful);
      expect(d.basic!.tbsResponseData.responses[0]!.certStatus.good).toBeNull();
      if (i < 3) expect(nonceOf(a.der)).toBeDefined();
      else expect(a.der.equals(plain.der)).toBe(true); // the pre-signed bytes, nonce ignored (RFC 6960 §4.4.1)
    }
    // openssl accepts such an answer (it warns that the nonce is missing).
    const respPath = join(ws.dir, "over-limit.der");
    writeFileSync(respPath, answers[9]!.der);
    const v = opensslAll(["ocsp", "-respin", respPath, "-issuer", ca.intermediatePath, "-cert", leaf.certPath, "-CAfile", ca.rootsPath]);
    expect(v.out).toContain("Response verify OK");
    expect(v.out).toContain(`${leaf.certPath}: good`);

    // Another client has its own bucket.
    const other = await postFrom(daemon.publicUrl, opensslRequest(ws.dir, ca.intermediatePath, ["-cert", leaf.certPath]), "127.0.0.2");
    expect(nonceOf(other.der)).toBeDefined();
    expect(counter.signatures - before).toBe(4);

    // The bucket refills with the (injected) clock: one more fresh signature after a second.
    clock.advance(1000);
    const refilled = await postFrom(daemon.publicUrl, opensslRequest(ws.dir, ca.intermediatePath, ["-cert", leaf.certPath]), "127.0.0.1");
    expect(nonceOf(refilled.der)).toBeDefined();
    const again = await postFrom(daemon.publicUrl, opensslRequest(ws.dir, ca.intermediatePath, ["-cert", leaf.certPath]), "127.0.0.1");
    expect(nonceOf(again.der)).toBeUndefined();
    expect(counter.signatures - before).toBe(5);
  });

  it("answers made-up serials over the limit with a constant unauthorized, and several CertIDs with tryLater", async () => {
    clock.advance(10_000); // a full bucket again (3)
    const before = counter.signatures;
    const statuses = [];
    for (let i = 1; i <= 6; i++) {
      const a = await postFrom(daemon.publicUrl, opensslRequest(ws.dir, ca.intermediatePath, ["-serial", `0x7e57${i}0`], ["-no_nonce"]), "127.0.0.3");
      statuses.push(decode(a.der).status);
      if (i > 3) expect(a.der.toString("hex")).toBe("30030a0106");
    }
    expect(statuses).toEqual([0, 0, 0, 6, 6, 6].map((s) => s as OCSPResponseStatus));
    expect(counter.signatures - before).toBe(3);
    const many = await postFrom(daemon.publicUrl, opensslRequest(ws.dir, ca.intermediatePath, ["-cert", leaf.certPath, "-serial", "0x01"], ["-no_nonce"]), "127.0.0.3");
    expect(decode(many.der).status).toBe(OCSPResponseStatus.tryLater);
    expect(counter.signatures - before).toBe(3);
  });
});

describe("OCSP answers pre-signed into the database", () => {
  const ws = new CaWorkspace();
  const clock = new ManualClock();
  let daemon: Daemon;
  let logs: string[];
  let counter: CountingSigner;
  let ca: CaClient;

  beforeAll(async () => {
    ({ daemon, logs } = await startInProcess(ws, clock, { wrapSigner: (s) => (counter = new CountingSigner(s)) }));
    ca = await new CaClient(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`]).init();
  });
  afterAll(async () => {
    await daemon?.close();
    ws.remove();
  });

  const storedRow = (serial: string) => {
    const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    try {
      return db.prepare("SELECT status, der FROM ocsp_answers WHERE serial = ?").get(serial) as { status: string; der: Buffer } | undefined;
    } finally {
      db.close();
    }
  };

  it("signs every certificate's answer in the background, serves the stored bytes, and replaces them on revocation", async () => {
    const leaves = [await ca.issue("pre-1"), await ca.issue("pre-2"), await ca.issue("pre-3")];
    await daemon.tick();
    const line = logs.filter((l) => l.includes('msg="OCSP pre-signing finished"')).at(-1)!;
    expect(line).toMatch(/ issuer=[0-9a-f]+/);
    expect(line).toMatch(/ signed=3( |$)/);
    expect(line).toMatch(/ ms=\d+/);

    const leaf = leaves[1]!;
    const row = storedRow(leaf.serial)!;
    expect(row.status).toBe("valid");
    const req = opensslRequest(ws.dir, ca.intermediatePath, ["-cert", leaf.certPath], ["-no_nonce"]);
    const before = counter.signatures;
    const served = await postFrom(daemon.publicUrl, req, "127.0.0.1");
    expect(served.der.equals(row.der)).toBe(true);
    expect(counter.signatures).toBe(before);
    // Kept in memory once read: with the row gone, the same request bytes are still answered with
    // those bytes, unsigned, for this client and another.
    const rw = new Database(join(ws.dataDir, "fleetca.db"));
    rw.prepare("DELETE FROM ocsp_answers WHERE serial = ?").run(leaf.serial);
    rw.close();
    expect((await postFrom(daemon.publicUrl, req, "127.0.0.1")).der.equals(row.der)).toBe(true);
    expect((await postFrom(daemon.publicUrl, Buffer.from(req), "127.0.0.2")).der.equals(row.der)).toBe(true);
    expect(counter.signatures).toBe(before);
    await daemon.tick(); // the pre-signer puts the missing row back
    expect(storedRow(leaf.serial)).toBeDefined();

    const getUrl = `${daemon.publicUrl}/ocsp/${encodeURIComponent(req.toString("base64"))}`;
    const getOnce = async () => Buffer.from(await (await fetch(getUrl)).arrayBuffer());
    expect((await getOnce()).equals(row.der)).toBe(true);
    expect((await getOnce()).equals(row.der)).toBe(true); // remembered by its path too

    // A revocation from another process: the stored row, the exact request bytes and the GET path all change.
    expect((await ws.cli(["revoke", leaf.serial, "--reason", "keyCompromise"])).code).toBe(0);
    const { seen } = await eventually(5_000, "the revocation for the same request bytes", () => postFrom(daemon.publicUrl, req, "127.0.0.1"), (a) => decode(a.der).basic?.tbsResponseData.responses[0]?.certStatus.revoked !== undefined);
    await eventually(5_000, "the stored row re-signed", async () => storedRow(leaf.serial)!, (r) => r.status === "revoked");
    expect(storedRow(leaf.serial)!.der.equals(seen.der)).toBe(true);
    expect((await getOnce()).equals(seen.der)).toBe(true);
    const respPath = join(ws.dir, "stored.der");
    writeFileSync(respPath, seen.der);
    const v = opensslAll(["ocsp", "-respin", respPath, "-issuer", ca.intermediatePath, "-cert", leaf.certPath, "-CAfile", ca.rootsPath, "-no_nonce"]);
    expect(v.out).toContain("Response verify OK");
    expect(v.out).toContain("Reason: keyCompromise");

    // Past half-life the next pass re-signs the stored answers.
    clock.advance(2 * HOUR + 1000);
    await daemon.tick();
    expect(logs.filter((l) => l.includes('msg="OCSP pre-signing finished"')).at(-1)).toMatch(/ signed=([4-9]|\d\d+)( |$)/);
    expect(storedRow(leaves[0]!.serial)!.der.equals(row.der)).toBe(false);
  });
});
