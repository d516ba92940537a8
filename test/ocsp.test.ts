import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createHash, generateKeyPairSync, randomBytes, sign as cryptoSign, type KeyObject } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate, Extension } from "@peculiar/asn1-x509";
import {
  BasicOCSPResponse,
  CertID,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  Request,
  TBSRequest,
  id_pkix_ocsp_nonce,
} from "@peculiar/asn1-ocsp";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { opensslAll, opensslAsync, type OpensslRun } from "./harness/openssl.js";
import { conditionalGetStatus } from "./harness/http.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { startInProcess } from "./harness/in-process.js";
import { ManualClock } from "../src/core/clock.js";
import { SIGNATURE_SCHEMES } from "../src/core/key-type.js";
import type { SerialHex } from "../src/core/serial.js";
import { bindIssuer, type Issuer } from "../src/issuance/issuer.js";
import { serializeTbs, signTbs } from "../src/issuance/sign-tbs.js";
import { createLogger } from "../src/log/logger.js";
import { OcspResponder } from "../src/revocation/ocsp/ocsp-responder.js";
import type { Signer } from "../src/signing/signer.js";
import type { CertificateRecord } from "../src/storage/ports.js";
import { keyIdentifier } from "../src/x509/certificate-info.js";
import { caTbs, nameOf } from "../src/x509/profile.js";

const HOUR = 3_600_000;
const OCSP_TYPE = "application/ocsp-response";

/** A running CA as a relying party sees it, plus the OCSP requests such a party makes. */
class Relying extends CaClient {
  intermediate!: Certificate;

  override async init(): Promise<this> {
    await super.init();
    this.intermediate = AsnConvert.parse(this.intermediateDer, Certificate);
    return this;
  }

  /** `openssl ocsp` against /ocsp, checking the signature against the roots. */
  ask(subject: string[], extra: string[] = []): Promise<OpensslRun> {
    // openssl wants the digest (-sha256) before -issuer/-cert.
    return opensslAsync(["ocsp", ...extra, "-issuer", this.intermediatePath, ...subject, "-url", `${this.publicUrl}/ocsp`, "-CAfile", this.rootsPath, "-resp_text"]);
  }

  /** A DER OCSPRequest made by openssl (`-reqout`), as a client would send it. */
  request(subject: string[], extra: string[] = []): Buffer {
    const out = join(this.ws.dir, `req-${randomBytes(4).toString("hex")}.der`);
    const r = opensslAll(["ocsp", ...extra, "-issuer", this.intermediatePath, ...subject, "-reqout", out]);
    expect(r.code, r.out).toBe(0);
    return readFileSync(out);
  }

  /** A CertID built by hand for a serial under this CA's intermediate. */
  certId(serialHex: string, hash: "sha1" | "sha256" = "sha1"): CertID {
    return certIdFor(this.intermediate, serialHex, hash);
  }

  /** POST /ocsp with a DER OCSPRequest (RFC 6960 A.1), answered with the raw DER. */
  async post(der: Uint8Array): Promise<{ status: number; headers: Headers; der: Buffer }> {
    const r = await fetch(`${this.publicUrl}/ocsp`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: Buffer.from(der) });
    return { status: r.status, headers: r.headers, der: Buffer.from(await r.arrayBuffer()) };
  }

  /** GET /ocsp/{path}, the path being a URL-encoded base64 request (RFC 6960 A.1). */
  async get(path: string): Promise<{ status: number; headers: Headers; der: Buffer }> {
    const r = await fetch(`${this.publicUrl}/ocsp/${path}`);
    return { status: r.status, headers: r.headers, der: Buffer.from(await r.arrayBuffer()) };
  }
}

/** A CertID (RFC 6960 §4.1.1) built by hand: hashes of the issuer's name and key, and a serial. */
function certIdFor(issuer: Certificate, serialHex: string, hash: "sha1" | "sha256" = "sha1"): CertID {
  const oid = hash === "sha1" ? "1.3.14.3.2.26" : "2.16.840.1.101.3.4.2.1";
  const tbs = issuer.tbsCertificate;
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: oid, parameters: null }),
    issuerNameHash: new OctetString(createHash(hash).update(Buffer.from(AsnConvert.serialize(tbs.subject))).digest()),
    issuerKeyHash: new OctetString(createHash(hash).update(Buffer.from(tbs.subjectPublicKeyInfo.subjectPublicKey)).digest()),
    // A DER INTEGER is signed: a magnitude with its top bit set needs a 00 octet in front.
    serialNumber: Uint8Array.from(Buffer.from(/^[89a-f]/.test(serialHex) ? `00${serialHex}` : serialHex, "hex")).buffer,
  });
}

function handMadeRequest(certIds: CertID[], nonce?: Uint8Array): Uint8Array {
  const tbsRequest = new TBSRequest({
    requestList: certIds.map((reqCert) => new Request({ reqCert })),
    ...(nonce && {
      requestExtensions: [new Extension({ extnID: id_pkix_ocsp_nonce, extnValue: new OctetString(AsnConvert.serialize(new OctetString(nonce))) })],
    }),
  });
  return new Uint8Array(AsnConvert.serialize(new OCSPRequest({ tbsRequest })));
}

function decode(der: Uint8Array): { status: OCSPResponseStatus; basic: BasicOCSPResponse | null } {
  const r = AsnConvert.parse(der, OCSPResponse);
  const basic = r.responseBytes ? AsnConvert.parse(r.responseBytes.response.buffer, BasicOCSPResponse) : null;
  return { status: r.responseStatus, basic };
}

/** Time as `openssl ocsp` prints it (ASN1_TIME_print): "Nov  3 05:00:50 2026 GMT". */
function opensslTime(d: Date): string {
  const [, day, mon, year, time] = /^\w+, (\d+) (\w+) (\d+) (\S+) GMT$/.exec(d.toUTCString())!;
  return `${mon} ${day!.replace(/^0/, "").padStart(2, " ")} ${time} ${year} GMT`;
}

describe("OCSP responder (real daemon, openssl ocsp)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: Relying;
  let leaf: Issued;

  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
    ca = await new Relying(ws, d.apiUrl, d.publicUrl).init();
    leaf = await ca.issue("web-1");
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("answers good, signed by the intermediate itself, and echoes openssl's nonce", async () => {
    const r = await ca.ask(["-cert", leaf.certPath]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain("Response verify OK");
    expect(r.out).toContain(`${leaf.certPath}: good`);
    expect(r.out).toContain("OCSP Nonce:");
    expect(r.out).not.toMatch(/WARNING: no nonce in response|nonce verify error/i);
    // ResponderID byKey = the intermediate's key hash; no certs, the CA signs directly (RFC 6960 §4.2.2.2).
    const ski = opensslAll(["x509", "-in", ca.intermediatePath, "-noout", "-ext", "subjectKeyIdentifier"]).out.split("\n")[1]!.trim().replace(/:/g, "");
    expect(r.out).toContain(`Responder Id: ${ski}`);
    expect(r.out).not.toContain("Certificate:");
    const thisUpdate = Date.parse(/This Update: (.+)/.exec(r.out)![1]!);
    const nextUpdate = Date.parse(/Next Update: (.+)/.exec(r.out)![1]!);
    expect(nextUpdate - thisUpdate).toBe(4 * HOUR);
  });

  it("answers good without a nonce, for SHA-1 and SHA-256 CertIDs", async () => {
    for (const hash of [[], ["-sha256"]]) {
      const r = await ca.ask(["-cert", leaf.certPath], ["-no_nonce", ...hash]);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain("Response verify OK");
      expect(r.out).toContain(`${leaf.certPath}: good`);
      expect(r.out).not.toContain("OCSP Nonce:");
    }
  });

  it("answers unknown for a serial this CA never issued", async () => {
    const r = await ca.ask(["-serial", "0x00112233445566778899aabbccddeeff"]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain("Response verify OK");
    expect(r.out).toContain("0x00112233445566778899aabbccddeeff: unknown");
  });

  it("answers several CertIDs in one signed response", async () => {
    const r = await ca.ask(["-cert", leaf.certPath, "-serial", "0x7e57"]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain("Response verify OK");
    expect(r.out).toContain(`${leaf.certPath}: good`);
    expect(r.out).toMatch(/0x7e57: unknown/i);
  });

  it("shows a revocation made over mTLS by the holder within 5 s, with its reason and time", async () => {
    const c = await ca.issue("revoke-mtls");
    // Warm the pre-signed cache with "good" first: the revocation must replace it.
    expect((await ca.ask(["-cert", c.certPath], ["-no_nonce"])).out).toContain(": good");
    const rev = await ca.revoke(c.identity, { serial: c.serial, reason: "superseded" });
    expect(rev.status, rev.raw).toBe(200);
    const { seen: out, elapsedMs } = await eventually(5_000, "the revocation in OCSP", async () => (await ca.ask(["-cert", c.certPath], ["-no_nonce"])).out, (o) => o.includes(": revoked"));
    expect(elapsedMs).toBeLessThan(5_000);
    expect(out).toContain("Response verify OK");
    expect(out).toContain("Reason: superseded");
    expect(out).toContain(`Revocation Time: ${opensslTime(new Date(rev.body.revokedAt))}`);
    // With a nonce (signed fresh) too.
    expect((await ca.ask(["-cert", c.certPath])).out).toContain(": revoked");
  });

  it("shows `fleetca revoke` from another process within 5 s, under every cached CertID hash", async () => {
    const c = await ca.issue("revoke-cli");
    expect((await ca.ask(["-cert", c.certPath], ["-no_nonce"])).out).toContain(": good");
    expect((await ca.ask(["-cert", c.certPath], ["-no_nonce", "-sha256"])).out).toContain(": good");
    const r = await ws.cli(["revoke", c.serial, "--reason", "keyCompromise"]);
    expect(r.code, r.stderr).toBe(0);
    const revokedAt = new Date(/ at (\S+)\n$/.exec(r.stdout)![1]!);
    for (const hash of [[], ["-sha256"]]) {
      const { seen: out, elapsedMs } = await eventually(5_000, "the CLI revocation in OCSP", async () => (await ca.ask(["-cert", c.certPath], ["-no_nonce", ...hash])).out, (o) => o.includes(": revoked"));
      expect(elapsedMs).toBeLessThan(5_000);
      expect(out).toContain("Response verify OK");
      expect(out).toContain("Reason: keyCompromise");
      expect(out).toContain(`Revocation Time: ${opensslTime(revokedAt)}`);
      // A nonce answer (signed now, its status taken from the same current answer) says the same.
      const fresh = (await ca.ask(["-cert", c.certPath], hash)).out;
      expect(fresh).toContain(": revoked");
      expect(fresh).toContain("Reason: keyCompromise");
      expect(fresh).toContain(`Revocation Time: ${opensslTime(revokedAt)}`);
      expect(fresh).not.toMatch(/nonce verify error|WARNING: no nonce/i);
    }
  });

  it("omits the reason of a certificate revoked as unspecified (RFC 5280 §5.3.1)", async () => {
    const c = await ca.issue("revoke-unspecified");
    expect((await ws.cli(["revoke", c.serial])).code).toBe(0);
    const { seen: out } = await eventually(5_000, "the unspecified revocation in OCSP", async () => (await ca.ask(["-cert", c.certPath], ["-no_nonce"])).out, (o) => o.includes(": revoked"));
    expect(out).not.toContain("Reason:");
  });

  it("refuses an issuer it does not serve with unauthorized(6)", async () => {
    const ws2 = new CaWorkspace();
    const d2 = await ws2.start();
    try {
      const other = await new Relying(ws2, d2.apiUrl, d2.publicUrl).init();
      const foreign = await other.issue("foreign");
      // The other CA's leaf and issuer, asked of *this* daemon.
      const r = opensslAll(["ocsp", "-issuer", other.intermediatePath, "-cert", foreign.certPath, "-url", `${ca.publicUrl}/ocsp`, "-CAfile", other.rootsPath, "-no_nonce"]);
      expect(r.out).toContain("Responder Error: unauthorized (6)");
      const raw = await ca.post(other.request(["-cert", foreign.certPath], ["-no_nonce"]));
      expect(raw.status).toBe(200);
      expect(raw.headers.get("content-type")).toBe(OCSP_TYPE);
      expect(raw.der.toString("hex")).toBe("30030a0106");
      // A request mixing both CAs' CertIDs cannot be covered by one CA's signature.
      const mixed = await ca.post(handMadeRequest([ca.certId(leaf.serial), other.certId(foreign.serial)]));
      expect(decode(mixed.der).status).toBe(OCSPResponseStatus.unauthorized);
    } finally {
      await d2.stop();
      ws2.remove();
    }
  });

  it("serves the GET form (RFC 6960 A.1) in every base64 spelling, with RFC 5019 caching headers", async () => {
    const req = ca.request(["-cert", leaf.certPath], ["-no_nonce"]);
    const b64 = req.toString("base64");
    const spellings = [encodeURIComponent(b64), b64, b64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")];
    const answers = [];
    for (const s of spellings) {
      const r = await ca.get(s);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe(OCSP_TYPE);
      answers.push(r);
    }
    // One pre-signed response for all of them.
    expect(answers[1]!.der.equals(answers[0]!.der)).toBe(true);
    expect(answers[2]!.der.equals(answers[0]!.der)).toBe(true);

    const respPath = join(ws.dir, "get-response.der");
    writeFileSync(respPath, answers[0]!.der);
    const v = opensslAll(["ocsp", "-respin", respPath, "-issuer", ca.intermediatePath, "-cert", leaf.certPath, "-CAfile", ca.rootsPath, "-no_nonce"]);
    expect(v.out).toContain("Response verify OK");
    expect(v.out).toContain(`${leaf.certPath}: good`);

    const single = decode(answers[0]!.der).basic!.tbsResponseData.responses[0]!;
    const h = answers[0]!.headers;
    expect(h.get("last-modified")).toBe(single.thisUpdate.toUTCString());
    expect(h.get("expires")).toBe(single.nextUpdate!.toUTCString());
    const maxAge = Number(/max-age=(\d+)/.exec(h.get("cache-control")!)![1]);
    expect(maxAge).toBeGreaterThan(4 * 3600 - 120);
    expect(maxAge).toBeLessThanOrEqual(4 * 3600);
    expect(h.get("cache-control")).toMatch(/public/);
    const etag = h.get("etag")!;
    expect(etag).toMatch(/^"[^"]+"$/);
    expect(await conditionalGetStatus(`${ca.publicUrl}/ocsp/${spellings[0]}`, etag)).toBe(304);

    // A nonce request over GET is answered fresh and never marked cacheable.
    const withNonce = await ca.get(encodeURIComponent(ca.request(["-cert", leaf.certPath]).toString("base64")));
    expect(withNonce.status).toBe(200);
    expect(withNonce.headers.get("cache-control")).toBe("no-store");
    expect(withNonce.headers.get("etag")).toBeNull();
    expect(decode(withNonce.der).basic!.tbsResponseData.responseExtensions?.[0]?.extnID).toBe(id_pkix_ocsp_nonce);
  });

  it("serves identical bytes for repeated no-nonce requests (pre-signed) and fresh ones for nonce requests", async () => {
    const plain = ca.request(["-cert", leaf.certPath], ["-no_nonce"]);
    const a = await ca.post(plain);
    const b = await ca.post(plain);
    expect(a.status).toBe(200);
    expect(a.der.equals(b.der)).toBe(true);
    expect(a.headers.get("cache-control")).toBe("no-store"); // POST answers are not for HTTP caches

    const n1 = await ca.post(ca.request(["-cert", leaf.certPath]));
    const n2 = await ca.post(ca.request(["-cert", leaf.certPath]));
    expect(decode(n1.der).status).toBe(OCSPResponseStatus.successful);
    expect(n1.der.equals(n2.der)).toBe(false);
    const nonces = [n1, n2].map((r) => Buffer.from(decode(r.der).basic!.tbsResponseData.responseExtensions![0]!.extnValue.buffer).toString("hex"));
    expect(nonces[0]).not.toBe(nonces[1]);
  });

  it("echoes nonces up to 128 octets exactly and refuses a longer one (RFC 9654 §2.1)", async () => {
    const nonce = randomBytes(128);
    const ok = decode((await ca.post(handMadeRequest([ca.certId(leaf.serial)], nonce))).der);
    expect(ok.status).toBe(OCSPResponseStatus.successful);
    const ext = ok.basic!.tbsResponseData.responseExtensions![0]!;
    expect(AsnConvert.parse(ext.extnValue.buffer, OctetString).buffer).toEqual(Uint8Array.from(nonce).buffer);
    const tooLong = await ca.post(handMadeRequest([ca.certId(leaf.serial)], randomBytes(129)));
    expect(tooLong.status).toBe(200);
    expect(decode(tooLong.der).status).toBe(OCSPResponseStatus.malformedRequest);
  });

  it("answers garbage with malformedRequest, too many CertIDs likewise, an oversize body with 413", async () => {
    for (const body of [Buffer.from("garbage"), Buffer.alloc(0), Buffer.from("3003020101", "hex")]) {
      const r = await ca.post(body);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe(OCSP_TYPE);
      expect(r.der.toString("hex")).toBe("30030a0101");
    }
    const bad = await ca.get("not%20base64!!");
    expect(bad.status).toBe(200);
    expect(bad.der.toString("hex")).toBe("30030a0101");
    const bareGet = await fetch(`${ca.publicUrl}/ocsp`);
    expect(bareGet.status).toBe(200);
    expect(Buffer.from(await bareGet.arrayBuffer()).toString("hex")).toBe("30030a0101");

    const many = await ca.post(handMadeRequest(Array.from({ length: 51 }, (_v, i) => ca.certId((i + 1).toString(16).padStart(2, "0")))));
    expect(decode(many.der).status).toBe(OCSPResponseStatus.malformedRequest);
    const fifty = decode((await ca.post(handMadeRequest(Array.from({ length: 50 }, (_v, i) => ca.certId((i + 1).toString(16).padStart(2, "0")))))).der);
    expect(fifty.status).toBe(OCSPResponseStatus.successful);
    expect(fifty.basic!.tbsResponseData.responses).toHaveLength(50);

    const big = await ca.post(Buffer.alloc(64 * 1024 + 1, 0x30));
    expect(big.status).toBe(413);
    expect(big.headers.get("content-type")).toBe(OCSP_TYPE);
  });
});

describe("OCSP pre-signed responses with an injected clock", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("are served from memory until half their life, then re-signed by the daemon's tick", async () => {
    const clock = new ManualClock();
    const { daemon } = await startInProcess(ws, clock);
    try {
      const ca = await new Relying(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`]).init();
      const leaf = await ca.issue("tick-1");
      const req = handMadeRequest([ca.certId(leaf.serial)]);
      const thisUpdateOf = async () => decode((await ca.post(req)).der).basic!.tbsResponseData.responses[0]!.thisUpdate.getTime();

      const t0 = await thisUpdateOf();
      expect(t0).toBe(Math.floor(clock.now().getTime() / 1000) * 1000);
      clock.advance(HOUR); // a quarter of 4 h: still the pre-signed bytes
      await daemon.tick();
      expect(await thisUpdateOf()).toBe(t0);

      clock.advance(HOUR + 60_000); // past half the validity: the sweep re-signs ahead of any request
      await daemon.tick();
      const sweptAt = Math.floor(clock.now().getTime() / 1000) * 1000;
      clock.advance(60_000);
      expect(await thisUpdateOf()).toBe(sweptAt);

      // Without a tick, a request that finds its answer past half-life re-signs it lazily.
      clock.advance(2 * HOUR + 60_000);
      expect(await thisUpdateOf()).toBe(Math.floor(clock.now().getTime() / 1000) * 1000);
    } finally {
      await daemon.close();
    }
  });
});

describe.each(["ecdsa-p384", "ed25519", "rsa-3072"] as const)("OCSP under a %s intermediate", (keyType) => {
  const ws = new CaWorkspace({ extraConfig: `ca: { keyType: ${keyType} }\n` });
  afterAll(() => ws.remove());

  it("signs with the intermediate's own scheme, and openssl verifies it", async () => {
    const { daemon } = await startInProcess(ws, new ManualClock());
    try {
      const ca = await new Relying(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`]).init();
      const leaf = await ca.issue("svc");
      for (const nonce of [[], ["-no_nonce"]]) {
        const r = await ca.ask(["-cert", leaf.certPath], nonce);
        expect(r.out).toContain("Response verify OK");
        expect(r.out).toContain(`${leaf.certPath}: good`);
      }
    } finally {
      await daemon.close();
    }
  });
});

/**
 * A Signer (the KMS port) over an in-memory P-256 key that counts signatures and can be held, so
 * a test can put a revocation in the middle of a signing or make the signer fail.
 */
class GatedSigner implements Signer {
  readonly keyType = "ecdsa-p256" as const;
  readonly publicKeySpki: Uint8Array;
  readonly #key: KeyObject;
  signatures = 0;
  failing = false;
  /** Signings waiting at the gate. */
  waiting = 0;
  #gate: Promise<void> | null = null;
  #open: () => void = () => {};

  constructor() {
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.publicKeySpki = publicKey.export({ type: "spki", format: "der" });
    this.#key = privateKey;
  }
  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }
  release(): void {
    this.#gate = null;
    this.#open();
  }
  async sign(data: Uint8Array): Promise<Uint8Array> {
    this.waiting++;
    await this.#gate;
    this.waiting--;
    if (this.failing) throw new Error("signer unavailable");
    this.signatures++;
    return cryptoSign("sha256", data, { key: this.#key, dsaEncoding: "der" });
  }
}

describe("OcspResponder behind narrow ports (fake inventory, gated signer)", () => {
  const silent = createLogger({ level: "silent", format: "logfmt" });
  const SERIAL = "5a".repeat(16);
  let signer: GatedSigner;
  let caCert: Certificate;
  let issuer: Issuer;
  let records: Map<string, CertificateRecord>;
  let clock: ManualClock;
  let responder: OcspResponder;
  /** When set, an inventory read (taken at call time) resolves only once this does: an asynchronous store's latency. */
  let readGate: Promise<void> | null;

  beforeEach(async () => {
    signer = new GatedSigner();
    clock = new ManualClock();
    const keyId = keyIdentifier(signer.publicKeySpki);
    const now = clock.now().getTime();
    const tbs = caTbs({
      serialContent: Uint8Array.of(1),
      subject: nameOf({ o: "test", cn: "test CA" }),
      subjectSpki: signer.publicKeySpki,
      subjectKeyId: keyId,
      selfScheme: SIGNATURE_SCHEMES["ecdsa-p256"],
      pathLen: 0,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + 1000 * HOUR),
    });
    const der = await signTbs(signer, serializeTbs(tbs));
    caCert = AsnConvert.parse(der, Certificate);
    issuer = await bindIssuer(der, signer);
    records = new Map([[SERIAL, record(SERIAL, issuer.keyIdHex)]]);
    readGate = null;
    const certificateStatus = async (s: SerialHex) => {
      const r = records.get(s) ?? null;
      await readGate;
      return r;
    };
    responder = new OcspResponder([issuer], { certificateStatus }, clock, silent, {
      validityMs: 4 * HOUR,
      maxUnknownEntries: 3,
    });
  });

  const ask = async (serial = SERIAL, nonce?: Uint8Array) => {
    const a = await responder.respond(handMadeRequest([certIdFor(caCert, serial)], nonce));
    const d = decode(a.der);
    return { ...a, status: d.status, single: d.basic?.tbsResponseData.responses[0] };
  };

  it("never keeps a 'good' signed while the certificate was being revoked", async () => {
    signer.hold();
    const racing = ask(); // reads "valid", then waits for the signer
    await vi.waitFor(() => expect(signer.waiting).toBe(1));
    records.set(SERIAL, { ...records.get(SERIAL)!, status: "revoked", revokedAt: clock.now(), revocationReason: 1 });
    responder.onRevocations([{ seq: 1, serial: SERIAL as SerialHex, issuerKeyId: issuer.keyIdHex, revokedAt: clock.now(), reason: 1, crlShard: null }]);
    signer.release();
    await racing; // began before the revocation: may say either
    const after = await ask();
    expect(after.single!.certStatus.revoked).toBeDefined();
    expect(after.single!.certStatus.revoked!.revocationReason!.reason).toBe(1);
    const again = await ask();
    expect(Buffer.from(again.der).equals(Buffer.from(after.der))).toBe(true);
  });

  it("never keeps a 'good' read before a revocation reported while the read was pending", async () => {
    let openReads: () => void = () => {};
    readGate = new Promise((resolve) => (openReads = resolve));
    const racing = ask(); // reads "valid"; the read resolves only when the gate opens
    records.set(SERIAL, { ...records.get(SERIAL)!, status: "revoked", revokedAt: clock.now(), revocationReason: 1 });
    responder.onRevocations([{ seq: 1, serial: SERIAL as SerialHex, issuerKeyId: issuer.keyIdHex, revokedAt: clock.now(), reason: 1, crlShard: null }]);
    openReads();
    readGate = null;
    await racing; // began before the revocation: may say either
    const after = await ask();
    expect(after.single!.certStatus.revoked).toBeDefined();
    expect(after.single!.certStatus.revoked!.revocationReason!.reason).toBe(1);
    const again = await ask();
    expect(Buffer.from(again.der).equals(Buffer.from(after.der))).toBe(true);
  });

  it("re-signs on a revocation before anyone asks, and signs nothing on the hot path", async () => {
    await ask();
    const signed = signer.signatures;
    for (let i = 0; i < 5; i++) await ask();
    expect(signer.signatures).toBe(signed);
    records.set(SERIAL, { ...records.get(SERIAL)!, status: "revoked", revokedAt: clock.now(), revocationReason: null });
    responder.onRevocations([{ seq: 1, serial: SERIAL as SerialHex, issuerKeyId: issuer.keyIdHex, revokedAt: clock.now(), reason: null, crlShard: null }]);
    await vi.waitFor(() => expect(signer.signatures).toBe(signed + 1));
    const after = await ask();
    expect(signer.signatures).toBe(signed + 1);
    expect(after.single!.certStatus.revoked!.revocationReason).toBeUndefined();
  });

  it("keeps only a few 'unknown' answers, without evicting known ones", async () => {
    await ask();
    for (let i = 1; i <= 10; i++) await ask(i.toString(16).padStart(32, "0"));
    const signed = signer.signatures;
    await ask(); // the known answer survived ten unknown ones
    await ask((10).toString(16).padStart(32, "0")); // the latest unknown is still kept
    expect(signer.signatures).toBe(signed);
    await ask((1).toString(16).padStart(32, "0")); // the oldest was evicted: signed again
    expect(signer.signatures).toBe(signed + 1);
    const unknown = await ask((2).toString(16).padStart(32, "0"));
    expect(unknown.single!.certStatus.unknown).toBeNull();
    expect(unknown.freshness!.nextUpdate.getTime() - unknown.freshness!.thisUpdate.getTime()).toBe(60_000);
  });

  it("serves the previous answer while the signer fails, and internalError once none is valid", async () => {
    const first = await ask();
    signer.failing = true;
    clock.advance(3 * HOUR); // past half-life, before nextUpdate
    const stale = await ask();
    expect(stale.status).toBe(OCSPResponseStatus.successful);
    expect(Buffer.from(stale.der).equals(Buffer.from(first.der))).toBe(true);
    clock.advance(2 * HOUR); // past nextUpdate
    expect((await ask()).status).toBe(OCSPResponseStatus.internalError);
    expect((await ask(SERIAL, randomBytes(16))).status).toBe(OCSPResponseStatus.internalError);
  });

  it("lets answers nobody asks for go instead of refreshing them forever", async () => {
    await ask();
    clock.advance(2 * HOUR + 1000);
    expect(await responder.refresh()).toEqual({ refreshed: 1, dropped: 0 }); // asked within the last 4 h
    expect(await responder.refresh()).toEqual({ refreshed: 0, dropped: 0 }); // fresh again
    clock.advance(2 * HOUR + 1000); // last asked more than 4 h ago
    expect(await responder.refresh()).toEqual({ refreshed: 0, dropped: 1 });
    const signed = signer.signatures;
    expect((await ask()).single!.thisUpdate.getTime()).toBe(Math.floor(clock.now().getTime() / 1000) * 1000);
    expect(signer.signatures).toBe(signed + 1); // asked again: signed on demand
  });
});

function record(serial: string, issuerKeyId: string): CertificateRecord {
  const now = new Date();
  return {
    serial: serial as SerialHex,
    issuerKeyId,
    sans: { dns: ["x.internal"], ip: [], uri: [] },
    subjectCommonName: "x.internal",
    notBefore: now,
    notAfter: new Date(now.getTime() + 24 * HOUR),
    der: new Uint8Array(),
    provisioner: "bootstrap",
    tokenId: null,
    status: "valid",
    revokedAt: null,
    revocationReason: null,
    createdAt: now,
    renewedFrom: null,
    crlShard: null,
  };
}
