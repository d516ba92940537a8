import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { OpenedCa } from "../src/cli/data-dir.js";
import { openCa } from "../src/cli/open-ca.js";
import { loadConfig, passphraseFrom } from "../src/config/load.js";
import type { CertificateRecord } from "../src/storage/ports.js";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { makeCsr, openssl } from "./harness/openssl.js";
import type { ApiResponse } from "./harness/http.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { startInProcess } from "./harness/in-process.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";
import { STORAGE_BACKENDS } from "./harness/storage-backends.js";
import { ManualClock } from "../src/core/clock.js";
import { MIGRATIONS } from "../src/storage/migrations.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";

const ADMIN_SAN = "spiffe://example.org/admin";

/** The CA as a host sees it, plus what only this file checks: the stored record and a chain that verifies. */
class Ca extends CaClient {
  #opened: Promise<OpenedCa> | null = null;

  /**
   * The stored record, read through the storage ports on whichever storage the config names (the
   * SQLite file or the PostgreSQL database): the CA opened once, as an operator command opens it.
   */
  async row(serial: string): Promise<CertificateRecord | null> {
    if (!this.#opened) {
      const { config } = loadConfig(this.ws.configPath, this.ws.env);
      this.#opened = openCa(config, passphraseFrom(config, this.ws.env), { create: false });
    }
    return (await this.#opened).storage.requests.getCertificate(serial as CertificateRecord["serial"]);
  }

  async close(): Promise<void> {
    if (this.#opened) await (await this.#opened).storage.close();
    this.#opened = null;
  }

  /** `openssl verify -x509_strict` accepts `c` as a TLS client certificate under the roots alone. */
  verifies(c: Issued): void {
    const chain = join(this.ws.dir, `verify-${c.serial}.chain.pem`);
    writeFileSync(chain, c.chain);
    const out = openssl(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", this.rootsPath, "-untrusted", chain, c.certPath]);
    expect(out.trim()).toBe(`${c.certPath}: OK`);
  }
}

function publicKeyOf(certPath: string): string {
  return openssl(["x509", "-in", certPath, "-noout", "-pubkey"]);
}

function sansOf(certPath: string): string {
  return openssl(["x509", "-in", certPath, "-noout", "-ext", "subjectAltName"]).split("\n").slice(1).join(" ").trim();
}

/** A refusal: the SPEC status and code, the reason first in the message, and nothing written. */
function expectRefused(r: ApiResponse, status: number, code: string, reason?: string): void {
  expect(r.status, r.raw).toBe(status);
  expect(r.body.error).toBe(code);
  if (reason) expect(r.body.message).toMatch(new RegExp(`^${reason}`));
}

// Once per storage adapter: renewal and revocation on PostgreSQL are their own code path (issue 17).
describe.each(STORAGE_BACKENDS)("renewal and revocation over mTLS (real daemon, real TLS, openssl), on %s", (backend) => {
  let server: TestPostgres | undefined;
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: Ca;
  let admin: Issued;

  beforeAll(async () => {
    let storage = "";
    let passphrase: string | undefined;
    if (backend === "PostgreSQL") {
      server = await startPostgres();
      // PostgreSQL storage refuses a development KEK (one that would live in one replica's dataDir).
      passphrase = "renew-revoke passphrase";
      storage = `storage: { type: postgres, url: "${await server.createDatabase("renew_revoke")}" }\n`;
    }
    ws = new CaWorkspace({ passphrase, extraConfig: `admins: ["${ADMIN_SAN}"]\n${storage}` });
    d = await ws.start();
    ca = await new Ca(ws, d.apiUrl, d.publicUrl).init();
    admin = await ca.issue("admin", [ADMIN_SAN], {}, ["--admin"]);
  }, 120_000);
  afterAll(async () => {
    await ca?.close();
    await d?.stop();
    ws?.remove();
    await server?.stop();
  });

  describe("POST /v1/renew", () => {
    it("renews with the current cert: same SANs and key, new serial, provisioner and link recorded", async () => {
      const old = await ca.issue("web-1", ["web-1.internal", "10.0.0.7", "spiffe://example.org/ns/prod/sa/web"]);
      const before = await ws.storedRowCounts();
      const r = await ca.renew(old.identity);
      expect(r.status, r.raw).toBe(201);
      expect(Object.keys(r.body).sort()).toEqual(["certificate", "chain", "notAfter", "notBefore", "serial"]);
      expect(r.body.serial).toMatch(/^[0-9a-f]{32}$/);
      expect(r.body.serial).not.toBe(old.serial);
      const renewed = ca.keep("web-1-renewed", r.body, old.keyPath);
      ca.verifies(renewed);
      expect(sansOf(renewed.certPath)).toBe(sansOf(old.certPath));
      expect(publicKeyOf(renewed.certPath)).toBe(publicKeyOf(old.certPath));
      const serial = openssl(["x509", "-in", renewed.certPath, "-noout", "-serial"]).trim().replace(/^serial=/, "").toLowerCase();
      expect(serial).toBe(r.body.serial);
      // Default lifetime (24 h + 1 min backdating), and no token spent.
      expect(Date.parse(r.body.notAfter) - Date.parse(r.body.notBefore)).toBe(24 * 3600_000 + 60_000);
      expect(await ws.storedRowCounts()).toEqual({ ...before, certificates: before.certificates! + 1 });
      const row = (await ca.row(r.body.serial))!;
      expect(row.provisioner).toBe((await ca.row(old.serial))!.provisioner);
      expect(row.provisioner).toBe("bootstrap");
      expect(row.renewedFrom).toBe(old.serial);
      expect(row.tokenId).toBeNull();
      expect((await ca.row(old.serial))!.renewedFrom).toBeNull();
      // The old cert is still valid (renewal does not revoke it) but superseded, and the new one
      // carries the lineage: the chain's first serial and the time of its attestation.
      expect((await ca.row(old.serial))!.status).toBe("valid");
      expect((await ca.row(old.serial))!.supersededBy).toBe(r.body.serial);
      expect(row.lineage).toBe(old.serial);
      expect(row.attestedAt!.getTime()).toBe((await ca.row(old.serial))!.attestedAt!.getTime());
      const again = await ca.renew(renewed.identity, {});
      expect(again.status, again.raw).toBe(201);
      expect((await ca.row(again.body.serial))!.renewedFrom).toBe(renewed.serial);
      expect((await ca.row(again.body.serial))!.lineage).toBe(old.serial);
    });

    it("does not fork: a superseded certificate gets its successor back for the same key, and a refusal for another", async () => {
      const old = await ca.issue("fork-1", ["fork-1.internal"]);
      const first = await ca.renew(old.identity);
      expect(first.status, first.raw).toBe(201);
      // The answer was lost and the host asks again with the same key: the same certificate.
      const before = await ws.storedRowCounts();
      const retry = await ca.renew(old.identity);
      expect(retry.status, retry.raw).toBe(201);
      expect(retry.body.serial).toBe(first.body.serial);
      expect(retry.body.certificate).toBe(first.body.certificate);
      expect(await ws.storedRowCounts()).toEqual(before);
      // A new key on the superseded certificate would be a second live lineage: refused.
      const other = makeCsr(ws.dir, "fork-1-other");
      expectRefused(await ca.renew(old.identity, { csr: other.csrPem }), 403, "forbidden", "superseded");
      expect(await ws.storedRowCounts()).toEqual(before);
      // Eight renewals of one certificate at once, each with its own key: exactly one succeeds.
      const racer = await ca.issue("fork-2", ["fork-2.internal"]);
      const keys = Array.from({ length: 8 }, (_, i) => makeCsr(ws.dir, `fork-2-${i}`));
      const answers = await Promise.all(keys.map((k) => ca.renew(racer.identity, { csr: k.csrPem })));
      expect(answers.filter((a) => a.status === 201)).toHaveLength(1);
      for (const a of answers.filter((a) => a.status !== 201)) expectRefused(a, 403, "forbidden", "superseded");
    });

    it("honours a requested ttl, clamped to issuance.maxTTL like /v1/sign", async () => {
      const old = await ca.issue("ttl-1", ["ttl-1.internal"]);
      const short = await ca.renew(old.identity, { ttl: "1h" });
      expect(short.status, short.raw).toBe(201);
      expect(Date.parse(short.body.notAfter) - Date.parse(short.body.notBefore)).toBe(3600_000 + 60_000);
      // The next renewal is the successor's (the old one is superseded).
      const long = await ca.renew(ca.keep("ttl-1-short", short.body, old.keyPath).identity, { ttl: "1000h" });
      expect(long.status, long.raw).toBe(201);
      expect(Date.parse(long.body.notAfter) - Date.parse(long.body.notBefore)).toBe(168 * 3600_000 + 60_000);
      const before = await ws.storedRowCounts();
      expectRefused(await ca.renew(ca.keep("ttl-1-long", long.body, old.keyPath).identity, { ttl: "soon" }), 400, "bad_request");
      expect(await ws.storedRowCounts()).toEqual(before);
    });

    it("rekeys with a CSR: a new public key, the same SANs", async () => {
      const old = await ca.issue("rekey-1", ["rekey-1.internal", "spiffe://example.org/ns/prod/sa/rekey"]);
      // One CSR asks for nothing, one for exactly the current SANs: both are a rekey.
      const bare = makeCsr(ws.dir, "rekey-1-new", { keyType: "ec-p384" });
      const r = await ca.renew(old.identity, { csr: bare.csrPem });
      expect(r.status, r.raw).toBe(201);
      const renewed = ca.keep("rekey-1-new", r.body, bare.keyPath);
      ca.verifies(renewed);
      expect(publicKeyOf(renewed.certPath)).not.toBe(publicKeyOf(old.certPath));
      expect(publicKeyOf(renewed.certPath)).toBe(openssl(["pkey", "-in", bare.keyPath, "-pubout"]));
      expect(sansOf(renewed.certPath)).toBe(sansOf(old.certPath));
      expect((await ca.row(renewed.serial))!.renewedFrom).toBe(old.serial);

      const same = makeCsr(ws.dir, "rekey-1-same", { cn: "rekey-1.internal", sans: ["DNS:rekey-1.internal", "URI:spiffe://example.org/ns/prod/sa/rekey"] });
      const r2 = await ca.renew(renewed.identity, { csr: same.csrPem });
      expect(r2.status, r2.raw).toBe(201);
      const renewed2 = ca.keep("rekey-1-same", r2.body, same.keyPath);
      expect(publicKeyOf(renewed2.certPath)).toBe(openssl(["pkey", "-in", same.keyPath, "-pubout"]));
      // The new key works for the next renewal over mTLS.
      expect((await ca.renew(renewed2.identity)).status).toBe(201);
    });

    it("refuses a rekey CSR that asks for other SANs (403) or does not verify (400)", async () => {
      const old = await ca.issue("rekey-2", ["rekey-2.internal"]);
      const before = await ws.storedRowCounts();
      const more = makeCsr(ws.dir, "rekey-2-more", { sans: ["DNS:rekey-2.internal", "DNS:other.internal"] });
      expectRefused(await ca.renew(old.identity, { csr: more.csrPem }), 403, "forbidden");
      const fewer = makeCsr(ws.dir, "rekey-2-other", { sans: ["DNS:other.internal"] });
      expectRefused(await ca.renew(old.identity, { csr: fewer.csrPem }), 403, "forbidden");
      const tampered = more.csrPem.replace(/^(.{120})(.)/s, (_m, a: string, c: string) => a + (c === "A" ? "B" : "A"));
      expectRefused(await ca.renew(old.identity, { csr: tampered }), 400, "bad_csr");
      expectRefused(await ca.renew(old.identity, { csr: 42 }), 400, "bad_request");
      expect(await ws.storedRowCounts()).toEqual(before);
    });

    it("refuses a request without a client certificate, while /v1/sign still takes none", async () => {
      const before = await ws.storedRowCounts();
      expectRefused(await ca.renew(undefined), 401, "unauthorized", "missing_client_certificate");
      expectRefused(await ca.revoke(undefined, { serial: admin.serial }), 401, "unauthorized", "missing_client_certificate");
      expectRefused(await ca.record(undefined, admin.serial), 401, "unauthorized", "missing_client_certificate");
      expect(await ws.storedRowCounts()).toEqual(before);
      expect((await ca.row(admin.serial))!.status).toBe("valid");
    });

    it("refuses a certificate from another fleetca instance", async () => {
      const otherWs = new CaWorkspace({ extraConfig: `admins: ["${ADMIN_SAN}"]\n` });
      const otherD = await otherWs.start();
      try {
        const other = await new Ca(otherWs, otherD.apiUrl, otherD.publicUrl).init();
        // Same SANs, even an admin SAN: it is still not ours.
        const foreign = await other.issue("foreign", ["web-1.internal", ADMIN_SAN], {}, ["--admin"]);
        const before = await ws.storedRowCounts();
        expectRefused(await ca.renew(foreign.identity), 401, "unauthorized", "unknown_certificate");
        expectRefused(await ca.revoke(foreign.identity, { serial: foreign.serial }), 401, "unauthorized", "unknown_certificate");
        expectRefused(await ca.revoke(foreign.identity, { serial: admin.serial }), 401, "unauthorized", "unknown_certificate");
        expectRefused(await ca.record(foreign.identity, admin.serial), 401, "unauthorized", "unknown_certificate");
        expect(await ws.storedRowCounts()).toEqual(before);
        expect((await ca.row(admin.serial))!.status).toBe("valid");
      } finally {
        await otherD.stop();
        otherWs.remove();
      }
    });

    it("refuses a look-alike certificate that copies a real serial and SANs", async () => {
      const real = await ca.issue("lookalike", ["lookalike.internal"]);
      const keyPath = join(ws.dir, "forged.key");
      const certPath = join(ws.dir, "forged.crt");
      openssl([
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyPath, "-out", certPath,
        "-subj", "/CN=lookalike.internal", "-addext", "subjectAltName=DNS:lookalike.internal", "-set_serial", `0x${real.serial}`, "-days", "1",
      ]);
      expect(openssl(["x509", "-in", certPath, "-noout", "-serial"]).trim().toLowerCase()).toBe(`serial=${real.serial}`);
      const forged = { key: readFileSync(keyPath, "utf8"), cert: readFileSync(certPath, "utf8") };
      const before = await ws.storedRowCounts();
      expectRefused(await ca.renew(forged), 401, "unauthorized", "unknown_certificate");
      expectRefused(await ca.revoke(forged, { serial: real.serial }), 401, "unauthorized", "unknown_certificate");
      expect(await ws.storedRowCounts()).toEqual(before);
      expect((await ca.row(real.serial))!.status).toBe("valid");
    });
  });

  describe("POST /v1/revoke", () => {
    it("lets the holder revoke its own cert; it can no longer renew and `fleetca list --revoked` shows it", async () => {
      const c = await ca.issue("holder-1", ["holder-1.internal"]);
      const r = await ca.revoke(c.identity, { serial: c.serial, reason: "keyCompromise" });
      expect(r.status, r.raw).toBe(200);
      expect(Object.keys(r.body).sort()).toEqual(["revokedAt", "serial"]);
      expect(r.body.serial).toBe(c.serial);
      expect(Math.abs(Date.parse(r.body.revokedAt) - Date.now())).toBeLessThan(30_000);
      const row = (await ca.row(c.serial))!;
      expect(row.status).toBe("revoked");
      expect(row.revokedAt!.getTime()).toBe(Date.parse(r.body.revokedAt));
      expect(row.revocationReason).toBe(1);

      const before = await ws.storedRowCounts();
      expectRefused(await ca.renew(c.identity), 401, "unauthorized", "revoked");
      expect(await ws.storedRowCounts()).toEqual(before);

      const list = await ws.cli(["list", "--revoked", "--json"]);
      expect(list.code, list.stderr).toBe(0);
      const listed = (JSON.parse(list.stdout) as Array<{ serial: string; status: string; revokedAt: string; revocationReason: number }>).find((x) => x.serial === c.serial);
      expect(listed).toMatchObject({ status: "revoked", revocationReason: 1 });
      expect(Date.parse(listed!.revokedAt)).toBe(Date.parse(r.body.revokedAt));

      // Already revoked: an admin's repeat answers 200 with the original time and keeps the reason.
      const again = await ca.revoke(admin.identity, { serial: c.serial, reason: "superseded" });
      expect(again.status, again.raw).toBe(200);
      expect(again.body).toEqual(r.body);
      expect((await ca.row(c.serial))!.revocationReason).toBe(1);
    });

    it("lets an admin revoke any cert, answers 404 for an unknown serial, and is idempotent", async () => {
      const c = await ca.issue("victim-1", ["victim-1.internal"]);
      const r = await ca.revoke(admin.identity, { serial: c.serial.toUpperCase(), reason: 5 });
      expect(r.status, r.raw).toBe(200);
      expect(r.body.serial).toBe(c.serial);
      expect(await ca.row(c.serial)).toMatchObject({ status: "revoked", revocationReason: 5 });
      const again = await ca.revoke(admin.identity, { serial: c.serial });
      expect(again.status).toBe(200);
      expect(again.body.revokedAt).toBe(r.body.revokedAt);
      expectRefused(await ca.renew(c.identity), 401, "unauthorized", "revoked");
      expectRefused(await ca.revoke(admin.identity, { serial: "00112233445566778899aabbccddeeff" }), 404, "not_found");
      // No reason means unspecified (0).
      const u = await ca.issue("victim-2", ["victim-2.internal"]);
      expect((await ca.revoke(admin.identity, { serial: u.serial })).status).toBe(200);
      expect((await ca.row(u.serial))!.revocationReason).toBe(0);
    });

    it("refuses a third party (403), without telling whether the serial exists", async () => {
      const victim = await ca.issue("victim-3", ["victim-3.internal"]);
      const third = await ca.issue("third-1", ["third-1.internal"]);
      const before = await ws.storedRowCounts();
      expectRefused(await ca.revoke(third.identity, { serial: victim.serial }), 403, "forbidden");
      expectRefused(await ca.revoke(third.identity, { serial: "00112233445566778899aabbccddeeff" }), 403, "forbidden");
      expectRefused(await ca.revoke(third.identity, { serial: admin.serial }), 403, "forbidden");
      expect(await ws.storedRowCounts()).toEqual(before);
      expect((await ca.row(victim.serial))!.status).toBe("valid");
      expect((await ca.row(admin.serial))!.status).toBe("valid");
      expect((await ca.renew(victim.identity)).status).toBe(201);
    });

    it.each([
      ["cACompromise", /CA key/],
      ["aACompromise", /attribute authority/],
      ["certificateHold", /permanent/],
      ["removeFromCRL", /permanent/],
      [2, /CA key/],
      [6, /permanent/],
      [7, /unknown revocation reason/],
      ["bogus", /unknown revocation reason/],
      [true, /unknown revocation reason/],
    ])("refuses reason %s with 400", async (reason, message) => {
      const c = await ca.issue(`bad-reason-${String(reason)}`, [`bad-reason-${String(reason).toLowerCase()}.internal`]);
      const before = await ws.storedRowCounts();
      const r = await ca.revoke(c.identity, { serial: c.serial, reason });
      expectRefused(r, 400, "bad_request");
      expect(r.body.message).toMatch(message);
      expect((await ca.row(c.serial))!.status).toBe("valid");
      expect(await ws.storedRowCounts()).toEqual(before);
    });

    it("refuses a malformed request body with 400", async () => {
      const c = await ca.issue("bad-body", ["bad-body.internal"]);
      for (const body of [{}, { serial: 12 }, { serial: "not-hex" }]) {
        expectRefused(await ca.revoke(c.identity, body), 400, "bad_request");
      }
      expect((await ca.row(c.serial))!.status).toBe("valid");
    });
  });

  describe("fleetca revoke", () => {
    it("revokes in the database while the daemon runs; renewal is then refused", async () => {
      const c = await ca.issue("cli-1", ["cli-1.internal"]);
      const r = await ws.cli(["revoke", c.serial, "--reason", "superseded"]);
      expect(r.code, r.stderr).toBe(0);
      const m = /^revoked ([0-9a-f]+) at (\S+)\n$/.exec(r.stdout);
      expect(m?.[1]).toBe(c.serial);
      expect(new Date(m![2]!).toISOString()).toBe(m![2]);
      expect(await ca.row(c.serial)).toMatchObject({ status: "revoked", revocationReason: 4, revokedAt: new Date(m![2]!) });
      const before = await ws.storedRowCounts();
      expectRefused(await ca.renew(c.identity), 401, "unauthorized", "revoked");
      expect(await ws.storedRowCounts()).toEqual(before);
      // Again: same time, says so.
      const again = await ws.cli(["revoke", c.serial]);
      expect(again.code).toBe(0);
      expect(again.stdout).toBe(`revoked ${c.serial} at ${m![2]} (already revoked; unchanged)\n`);
    });

    it.each([
      ["an unknown serial", ["revoke", "00112233445566778899aabbccddeeff"], /^fleetca: no certificate with serial 00112233445566778899aabbccddeeff\n$/],
      ["a malformed serial", ["revoke", "xyz"], /^fleetca: "xyz" is not a serial number/],
      ["a refused reason", ["revoke", "00112233445566778899aabbccddeeff", "--reason", "certificateHold"], /^fleetca: --reason: certificateHold is not supported/],
      ["an unknown reason", ["revoke", "00112233445566778899aabbccddeeff", "--reason", "oops"], /^fleetca: --reason: unknown revocation reason/],
    ])("prints one line and exits non-zero for %s", async (_name, args, expected) => {
      const r = await ws.cli(args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(expected);
      expect(r.stderr).toMatch(/^fleetca: [^\n]+\n$/);
    });
  });

  describe("GET /v1/certs/:serial", () => {
    it("shows an admin the record; a non-admin gets 403, an unknown serial 404", async () => {
      const c = await ca.issue("rec-1", ["rec-1.internal", "spiffe://example.org/ns/prod/sa/rec"]);
      const r = await ca.record(admin.identity, c.serial);
      expect(r.status, r.raw).toBe(200);
      expect(r.body).toMatchObject({
        serial: c.serial,
        status: "valid",
        sans: ["rec-1.internal", "spiffe://example.org/ns/prod/sa/rec"],
        notBefore: c.notBefore,
        notAfter: c.notAfter,
        provisioner: "bootstrap",
        revokedAt: null,
        revocationReason: null,
        supersededBy: null,
        lineage: c.serial,
        certificate: c.certificate,
      });
      expect(Date.parse(r.body.attestedAt as string)).toBeGreaterThan(0);
      // After a renewal the record names its successor, and the successor the lineage.
      const next = await ca.renew(c.identity);
      expect(next.status, next.raw).toBe(201);
      expect((await ca.record(admin.identity, c.serial)).body).toMatchObject({ supersededBy: next.body.serial, status: "valid" });
      expect((await ca.record(admin.identity, next.body.serial as string)).body).toMatchObject({ lineage: c.serial, renewedFrom: c.serial, attestedAt: r.body.attestedAt });
      expectRefused(await ca.record(c.identity, c.serial), 403, "forbidden");
      expectRefused(await ca.record(c.identity, "00112233445566778899aabbccddeeff"), 403, "forbidden");
      expectRefused(await ca.record(admin.identity, "00112233445566778899aabbccddeeff"), 404, "not_found");

      const revoked = await ca.revoke(c.identity, { serial: c.serial, reason: "cessationOfOperation" });
      const after = await ca.record(admin.identity, c.serial);
      expect(after.body).toMatchObject({ status: "revoked", revokedAt: revoked.body.revokedAt, revocationReason: "cessationOfOperation" });
    });
  });

  it("never logs a private key, and logs each renewal and revocation", () => {
    expect(d.output).not.toMatch(/PRIVATE KEY/);
    expect(d.output).toMatch(/msg="certificate renewed"/);
    expect(d.output).toMatch(/msg="certificate revoked"/);
  });
});

describe("renewal against the injected clock (in-process daemon)", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("renews an unexpired cert and refuses it once expired", async () => {
    const clock = new ManualClock();
    const { daemon } = await startInProcess(ws, clock);
    try {
      const ca = await new Ca(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`]).init();
      const c = await ca.issue("short", ["short.internal"], { ttl: "10m" });
      clock.advance(9 * 60_000);
      expect((await ca.renew(c.identity, { ttl: "10m" })).status).toBe(201);
      clock.advance(2 * 60_000); // 11 min: past notAfter by the CA's clock (node's real clock would still accept it)
      const before = ws.rowCounts();
      expectRefused(await ca.renew(c.identity), 401, "unauthorized", "expired");
      expect(ws.rowCounts()).toEqual(before);
    } finally {
      await daemon.close();
    }
  });
});

describe("schema migration v2 (certificates.renewed_from)", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("upgrades a v1 file and still reads one read-only before it is upgraded", () => {
    const path = join(ws.dir, "v1.db");
    const db = new Database(path);
    db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
    db.exec(MIGRATIONS[0]!.sqlite);
    db.prepare("INSERT INTO schema_migrations VALUES (1, 'v1', 0)").run();
    db.prepare("INSERT INTO issuers VALUES ('aa', 'intermediate', 'k', NULL, x'00', 0, 1, 'active', 0)").run();
    db.prepare(
      "INSERT INTO certificates (serial, issuer_key_id, sans, subject_cn, not_before, not_after, der, provisioner, token_id, created_at) VALUES ('0a', 'aa', '{\"dns\":[],\"ip\":[],\"uri\":[]}', NULL, 0, 1, x'00', 'bootstrap', NULL, 0)",
    ).run();
    db.close();

    const ro = new SqliteStore(path, { readonly: true });
    expect(ro.getCertificate("0a" as never)?.renewedFrom).toBeNull();
    ro.close();

    const rw = new SqliteStore(path);
    expect(rw.db.prepare("SELECT MAX(version) FROM schema_migrations").pluck().get()).toBe(MIGRATIONS.at(-1)!.version);
    expect(rw.getCertificate("0a" as never)?.renewedFrom).toBeNull();
    expect(rw.revokeCertificate("0a" as never, new Date(5), 1)).toEqual({ outcome: "revoked", revokedAt: new Date(5), reason: 1 });
    expect(rw.revokeCertificate("0a" as never, new Date(9), 4)).toEqual({ outcome: "already_revoked", revokedAt: new Date(5), reason: 1 });
    expect(rw.revokeCertificate("0b" as never, new Date(9), 4)).toEqual({ outcome: "not_found" });
    // v3: the revocation went into the revocation log exactly once.
    expect(rw.revocationsAfter(0, 10).map((e) => [e.serial, e.reason])).toEqual([["0a", 1]]);
    rw.close();
  });
});
