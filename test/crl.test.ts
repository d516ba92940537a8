import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { openssl, opensslAll } from "./harness/openssl.js";
import { conditionalGetStatus } from "./harness/http.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { startInProcess } from "./harness/in-process.js";
import { ManualClock } from "../src/core/clock.js";
import { toPem } from "../src/x509/pem.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";
import { MIGRATIONS } from "../src/storage/migrations.js";
import type { SerialHex } from "../src/core/serial.js";
import type { CrlStore, RevokedPage, RevokedRow } from "../src/storage/ports.js";
import { STORAGE_BACKENDS, useStorageBackend } from "./harness/storage-backends.js";
import { packRevokedRows, unpackRevokedPage } from "../src/storage/revoked-page.js";
import { CrlWriter } from "../src/revocation/crl/crl-encoder.js";

function encodePage(page: RevokedPage): void {
  new CrlWriter([], 0).addPage(page);
}

const HOUR = 3_600_000;

interface CrlResponse {
  status: number;
  headers: Headers;
  der: Buffer;
}

async function getCrl(url: string): Promise<CrlResponse> {
  const r = await fetch(url);
  return { status: r.status, headers: r.headers, der: Buffer.from(await r.arrayBuffer()) };
}

/** What a relying party sees in a CRL, as `openssl crl -text` shows it after checking the signature. */
interface CrlView {
  text: string;
  number: number;
  aki: string;
  lastUpdate: Date;
  nextUpdate: Date;
  /** Serial (lower-case hex) → reason as openssl names it, or null when the entry has none. */
  entries: Map<string, string | null>;
}

/**
 * A CA as a relying party checking its CRLs sees it: the roots and the intermediate, plus both in
 * one file (what `openssl crl -CAfile` needs) and the intermediate's key id (the per-issuer CRL URL).
 */
class Relying extends CaClient {
  bundlePath = "";
  keyIdHex = "";

  override async init(): Promise<this> {
    await super.init();
    this.bundlePath = join(this.ws.dir, "roots+intermediate.pem");
    writeFileSync(this.bundlePath, this.roots + this.intermediatePem);
    const ski = openssl(["x509", "-noout", "-ext", "subjectKeyIdentifier"], { input: this.intermediatePem });
    this.keyIdHex = ski.split("\n")[1]!.trim().replace(/:/g, "").toLowerCase();
    return this;
  }
}

let crlFiles = 0;
function viewCrl(ca: Relying, der: Buffer): CrlView {
  const path = join(ca.ws.dir, `crl-${++crlFiles}.der`);
  writeFileSync(path, der);
  const r = opensslAll(["crl", "-inform", "DER", "-in", path, "-CAfile", ca.bundlePath, "-noout", "-text"]);
  expect(r.code, r.out).toBe(0);
  expect(r.out).toContain("verify OK");
  const text = r.out;
  const field = (label: string) => new RegExp(`${label}:\\s*\\n\\s*(\\S+)`).exec(text)?.[1] ?? "";
  const entries = new Map<string, string | null>();
  const revoked = text.split("Revoked Certificates:")[1] ?? "";
  for (const block of revoked.split("Serial Number: ").slice(1)) {
    const serial = block.split("\n")[0]!.trim().toLowerCase();
    const reason = /X509v3 CRL Reason Code:\s*\n\s*(.+)/.exec(block.split("Signature Algorithm")[0]!)?.[1]?.trim() ?? null;
    entries.set(serial, reason);
  }
  return {
    text,
    number: Number(field("X509v3 CRL Number")),
    aki: field("X509v3 Authority Key Identifier").replace(/:/g, "").toLowerCase(),
    lastUpdate: new Date(/Last Update: (.+)/.exec(text)![1]!),
    nextUpdate: new Date(/Next Update: (.+)/.exec(text)![1]!),
    entries,
  };
}

function storedCrlState(ws: CaWorkspace, keyIdHex: string): { crl_number: number; der: Buffer; this_update: number; next_update: number } | undefined {
  const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
  try {
    const row = db.prepare("SELECT * FROM crls WHERE issuer_key_id = ? AND shard = -1").get(keyIdHex) as { write_id: string } | undefined;
    if (!row) return undefined;
    const chunks = db.prepare("SELECT bytes FROM crl_chunks WHERE issuer_key_id = ? AND shard = -1 AND write_id = ? ORDER BY seq").pluck().all(keyIdHex, row.write_id) as Buffer[];
    return { ...row, der: Buffer.concat(chunks) } as never;
  } finally {
    db.close();
  }
}

describe("CRL publication (fleetca serve, openssl as the relying party)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: Relying;
  /** Every CRL number seen, in order. */
  const numbers: number[] = [];
  let revokedByHolder: Issued;
  let good: Issued;

  const current = async (): Promise<CrlView> => {
    const r = await getCrl(`${d.publicUrl}/crl`);
    expect(r.status).toBe(200);
    const v = viewCrl(ca, r.der);
    if (numbers.at(-1) !== v.number) numbers.push(v.number);
    return v;
  };

  beforeAll(async () => {
    ws = new CaWorkspace({ extraConfig: "crl: { interval: 1h, validity: 24h }\n" });
    d = await ws.start();
    ca = await new Relying(ws, d.apiUrl, d.publicUrl).init();
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("serves the intermediate's CRL at /crl and at the URL in every leaf's CRL distribution point", async () => {
    const r = await getCrl(`${d.publicUrl}/crl`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/pkix-crl");
    const v = viewCrl(ca, r.der);
    numbers.push(v.number);
    expect(v.text).toContain("Version 2");
    expect(v.text).toContain("No Revoked Certificates.");
    expect(v.entries.size).toBe(0);
    expect(v.number).toBeGreaterThan(0);
    expect(v.aki).toBe(ca.keyIdHex);
    expect(v.text).toMatch(/Issuer: O = fleetca, CN = fleetca Intermediate CA/);
    expect(v.nextUpdate.getTime() - v.lastUpdate.getTime()).toBe(24 * HOUR);

    // HTTP caching: good until nextUpdate but never beyond the interval; validators name this CRL.
    const maxAge = Number(/^public, max-age=(\d+)$/.exec(r.headers.get("cache-control") ?? "")?.[1]);
    expect(maxAge).toBeGreaterThan(3500);
    expect(maxAge).toBeLessThanOrEqual(3600);
    expect(new Date(r.headers.get("last-modified")!).getTime()).toBe(v.lastUpdate.getTime());
    expect(r.headers.get("etag")).toBe(`"${v.number}"`);
    expect(await conditionalGetStatus(`${d.publicUrl}/crl`, `"${v.number}"`)).toBe(304);
    expect(await conditionalGetStatus(`${d.publicUrl}/crl`, `"${v.number + 1000}"`)).toBe(200);

    // Stored before it was served.
    const state = storedCrlState(ws, ca.keyIdHex)!;
    expect(state.crl_number).toBe(v.number);
    expect(Buffer.from(state.der).equals(r.der)).toBe(true);

    // The per-issuer URL, as a leaf names it.
    good = await ca.issue("crl-good");
    const cdp = openssl(["x509", "-in", good.certPath, "-noout", "-ext", "crlDistributionPoints"]);
    const url = /URI:(\S+)/.exec(cdp)![1]!;
    expect(new URL(url).pathname).toBe(`/crl/${ca.keyIdHex}`);
    const byKeyId = await getCrl(`${d.publicUrl}${new URL(url).pathname}`);
    expect(byKeyId.status).toBe(200);
    expect(byKeyId.headers.get("content-type")).toBe("application/pkix-crl");
    expect(byKeyId.der.equals(r.der)).toBe(true);
  });

  it("answers 404 not_found JSON for an unknown issuer key id", async () => {
    for (const id of ["00112233445566778899aabbccddeeff00112233", "not-hex", ca.keyIdHex.slice(2)]) {
      const r = await fetch(`${d.publicUrl}/crl/${id}`);
      expect(r.status).toBe(404);
      expect(r.headers.get("content-type")).toMatch(/^application\/json/);
      expect(await r.json()).toMatchObject({ error: "not_found" });
    }
  });

  it("lists a certificate revoked over mTLS within 5 s, with its reason (none for unspecified)", async () => {
    revokedByHolder = await ca.issue("crl-holder");
    const plain = await ca.issue("crl-plain");
    const before = (await current()).number;
    const r = await ca.revoke(revokedByHolder.identity, { serial: revokedByHolder.serial, reason: "superseded" });
    expect(r.status, r.raw).toBe(200);
    expect((await ca.revoke(plain.identity, { serial: plain.serial })).status).toBe(200);
    const { seen: v, elapsedMs } = await eventually(5_000, "revocations in /crl", current, (v) => v.entries.has(revokedByHolder.serial) && v.entries.has(plain.serial));
    expect(elapsedMs).toBeLessThan(5_000);
    expect(v.number).toBeGreaterThan(before);
    expect(v.entries.get(revokedByHolder.serial)).toBe("Superseded");
    // RFC 5280 §5.3.1: no reasonCode extension rather than unspecified(0).
    expect(v.entries.get(plain.serial)).toBeNull();
    expect(v.entries.has(good.serial)).toBe(false);
  });

  it("lists a certificate revoked by `fleetca revoke` (another process) within 5 s", async () => {
    const c = await ca.issue("crl-cli");
    const before = (await current()).number;
    const r = await ws.cli(["revoke", c.serial, "--reason", "keyCompromise"]);
    expect(r.code, r.stderr).toBe(0);
    const { seen: v, elapsedMs } = await eventually(5_000, "CLI revocation in /crl", current, (v) => v.entries.has(c.serial));
    expect(elapsedMs).toBeLessThan(5_000);
    expect(v.number).toBeGreaterThan(before);
    expect(v.entries.get(c.serial)).toBe("Key Compromise");
    expect(v.entries.get(revokedByHolder.serial)).toBe("Superseded");
  });

  it("makes `openssl verify -crl_check` refuse the revoked cert and accept a good one", async () => {
    const r = await getCrl(`${d.publicUrl}/crl/${ca.keyIdHex}`);
    const crlPem = join(ws.dir, "current-crl.pem");
    writeFileSync(crlPem, toPem(r.der, "X509 CRL"));
    const verify = (c: Issued) =>
      opensslAll(["verify", "-crl_check", "-CRLfile", crlPem, "-CAfile", ca.rootsPath, "-untrusted", c.chainPath, c.certPath]);
    const bad = verify(revokedByHolder);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toMatch(/certificate revoked/);
    const ok = verify(good);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toContain(`${good.certPath}: OK`);
  });

  it("coalesces a burst of revocations into a few CRLs", async () => {
    const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => ca.issue(`crl-burst-${i}`)));
    const before = (await current()).number;
    const answers = await Promise.all(burst.map((c) => ca.revoke(c.identity, { serial: c.serial, reason: "cessationOfOperation" })));
    expect(answers.map((a) => a.status)).toEqual(burst.map(() => 200));
    const { seen: v } = await eventually(5_000, "the burst in /crl", current, (v) => burst.every((c) => v.entries.has(c.serial)));
    // Ten revocations within a few hundred milliseconds: far fewer than ten signatures.
    expect(v.number - before).toBeGreaterThanOrEqual(1);
    expect(v.number - before).toBeLessThan(5);
  });

  it("keeps CRL numbers strictly increasing, also across restarts on the same dataDir", async () => {
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]!).toBeGreaterThan(numbers[i - 1]!);
    const last = await getCrl(`${d.publicUrl}/crl`);
    const lastView = viewCrl(ca, last.der);

    // A restart inside the interval with nothing new: the stored CRL is served as it was.
    await d.stop();
    d = await ws.start();
    const same = await getCrl(`${d.publicUrl}/crl`);
    expect(same.der.equals(last.der)).toBe(true);
    expect(d.output).toMatch(/msg="serving the stored CRL"/);

    // Revoked while the daemon was down: the stored CRL no longer matches, so a higher number.
    ca = await new Relying(ws, d.apiUrl, d.publicUrl).init(); // the restarted daemon listens on new ports
    const c = await ca.issue("crl-offline");
    const beforeStop = (await current()).number;
    expect(beforeStop).toBe(lastView.number);
    await d.stop();
    const r = await ws.cli(["revoke", c.serial, "--reason", "affiliationChanged"]);
    expect(r.code, r.stderr).toBe(0);
    d = await ws.start();
    const after = viewCrl(ca, (await getCrl(`${d.publicUrl}/crl`)).der);
    expect(after.number).toBe(beforeStop + 1);
    expect(after.entries.get(c.serial)).toBe("Affiliation Changed");
    expect(storedCrlState(ws, ca.keyIdHex)!.crl_number).toBe(after.number);
    expect(d.output).toMatch(/msg="CRL published".*why="revocations since the stored CRL was signed"/);
  });
});

describe("CRL cadence against the injected clock (in-process daemon)", () => {
  // A short-lived intermediate, so nextUpdate meets its notAfter within the test.
  const ws = new CaWorkspace({
    extraConfig: "ca: { rootValidity: 96h, intermediateValidity: 48h }\nissuance: { defaultTTL: 1h, maxTTL: 24h }\ncrl: { interval: 1h, validity: 24h }\n",
  });
  afterAll(() => ws.remove());

  it("re-signs every interval with a new number, nextUpdate = thisUpdate + validity, capped by the issuer", async () => {
    const clock = new ManualClock(new Date(Math.floor(Date.now() / 1000) * 1000));
    let { daemon } = await startInProcess(ws, clock);
    try {
      const ca = await new Relying(ws, daemon.apiUrl, daemon.publicUrl).init();
      const interNotAfter = new Date(openssl(["x509", "-noout", "-enddate"], { input: ca.intermediatePem }).trim().replace(/^notAfter=/, ""));
      const fetchView = async () => {
        const r = await getCrl(`${daemon.publicUrl}/crl`);
        expect(r.status).toBe(200);
        return { r, v: viewCrl(ca, r.der) };
      };

      const first = await fetchView();
      expect(first.v.lastUpdate.getTime()).toBe(clock.now().getTime());
      expect(first.v.nextUpdate.getTime()).toBe(first.v.lastUpdate.getTime() + 24 * HOUR);
      expect(first.r.headers.get("cache-control")).toBe("public, max-age=3600");

      // Inside the interval: ticks leave it alone.
      await daemon.tick();
      clock.advance(59 * 60_000);
      await daemon.tick();
      const unchanged = await fetchView();
      expect(unchanged.v.number).toBe(first.v.number);
      // Caches are told to come back at the interval at the latest, counted from now.
      expect(unchanged.r.headers.get("cache-control")).toBe("public, max-age=3600");

      // Past the interval: a new CRL, new number, new thisUpdate.
      clock.advance(2 * 60_000);
      await daemon.tick();
      const second = await fetchView();
      expect(second.v.number).toBeGreaterThan(first.v.number);
      expect(second.v.lastUpdate.getTime()).toBe(clock.now().getTime());
      expect(second.v.nextUpdate.getTime()).toBe(second.v.lastUpdate.getTime() + 24 * HOUR);
      expect(new Date(second.r.headers.get("last-modified")!).getTime()).toBe(second.v.lastUpdate.getTime());
      expect(second.r.headers.get("etag")).toBe(`"${second.v.number}"`);

      // A restart inside the interval serves the stored CRL; one after it signs a new one at start.
      await daemon.close();
      clock.advance(10 * 60_000);
      ({ daemon } = await startInProcess(ws, clock));
      expect((await fetchView()).v.number).toBe(second.v.number);
      await daemon.close();
      clock.set(new Date(second.v.lastUpdate.getTime() + HOUR));
      ({ daemon } = await startInProcess(ws, clock));
      const restarted = await fetchView();
      expect(restarted.v.number).toBe(second.v.number + 1);
      expect(restarted.v.lastUpdate.getTime()).toBe(clock.now().getTime());

      // 30 h in, thisUpdate + 24 h would outlive the 48 h intermediate: nextUpdate stops at its notAfter.
      clock.set(new Date(interNotAfter.getTime() - 18 * HOUR));
      await daemon.tick();
      const capped = await fetchView();
      expect(capped.v.number).toBeGreaterThan(restarted.v.number);
      expect(capped.v.nextUpdate.getTime()).toBe(interNotAfter.getTime());

      // The last half hour of the intermediate: caches may keep it only until nextUpdate.
      clock.set(new Date(interNotAfter.getTime() - 30 * 60_000));
      await daemon.tick();
      const last = await fetchView();
      expect(last.v.number).toBeGreaterThan(capped.v.number);
      expect(last.v.nextUpdate.getTime()).toBe(interNotAfter.getTime());
      expect(last.r.headers.get("cache-control")).toBe("public, max-age=1800");
    } finally {
      await daemon.close();
    }
  });
});

describe.each(STORAGE_BACKENDS)("CrlStore on %s (CaStorage.crls)", (name) => {
  const backend = useStorageBackend(name);

  it("never lets the stored CRL number go down, and lists only the issuer's unexpired revocations", async () => {
    const storage = await backend.fresh();
    const sql = backend.sql(storage);
    const crls: CrlStore = storage.crls;
    for (const keyId of ["aa", "bb"]) {
      await storage.issuers.addIssuer({ keyId, role: "intermediate", keyName: keyId, parentKeyId: null, der: new Uint8Array([0]), notBefore: new Date(0), notAfter: new Date(10_000), status: "active", createdAt: new Date(0), revokedAt: null, revocationReason: null, activatedAt: null });
    }
    const full = { issuerKeyId: "aa", shard: null };
    const state = (n: number, shard: number | null = null) => ({
      issuerKeyId: "aa", shard, crlNumber: n, thisUpdate: new Date(n * 1000), nextUpdate: new Date(n * 1000 + 500), entries: 0, revocationSeq: n, der: new Uint8Array([n]),
    });
    expect(await crls.getCrl(full)).toBeNull();
    expect(await crls.saveCrl(state(3))).toBe(true);
    expect(await crls.saveCrl(state(3))).toBe(false);
    expect(await crls.saveCrl(state(2))).toBe(false);
    expect(await crls.getCrl(full)).toEqual(state(3));
    expect(await crls.saveCrl(state(7))).toBe(true);
    expect((await crls.getCrl(full))?.crlNumber).toBe(7);
    // A CRL of many chunks comes back byte for byte; the replaced one's chunks are gone.
    const big = { ...state(8), der: new Uint8Array(randomBytes(1_300_000)) };
    expect(await crls.saveCrl(big)).toBe(true);
    expect(Buffer.from((await crls.getCrl(full))!.der).equals(Buffer.from(big.der))).toBe(true);
    expect(await sql("SELECT COUNT(DISTINCT write_id) FROM crl_chunks WHERE shard = -1")).toEqual([[1]]);
    expect(await crls.crlSummaryOf(full)).toEqual({ crlNumber: 8, entries: 0 });
    // Two writers with the same number at once (chunks interleaved): one wins, whole; a
    // crashed write's leftover chunks are swept by the next save.
    await sql("INSERT INTO crl_chunks (issuer_key_id, shard, crl_number, write_id, seq, bytes) VALUES ('aa', -1, 8, 'crashed', 0, ?)", [Buffer.of(0)]);
    const a = { ...state(9), der: new Uint8Array(randomBytes(600_000)) };
    const b = { ...state(9), der: new Uint8Array(randomBytes(600_000)) };
    const [wa, wb] = await Promise.all([crls.saveCrl(a), crls.saveCrl(b)]);
    expect([wa, wb].sort()).toEqual([false, true]);
    expect(Buffer.from((await crls.getCrl(full))!.der).equals(Buffer.from((wa ? a : b).der))).toBe(true);
    expect(await sql("SELECT COUNT(DISTINCT write_id) FROM crl_chunks WHERE shard = -1")).toEqual([[1]]);
    // Each partition has its own number (RFC 5280 §5.2.3 per CRL scope).
    expect(await crls.saveCrl(state(1, 2))).toBe(true);
    expect(await crls.getCrl({ issuerKeyId: "aa", shard: 2 })).toEqual(state(1, 2));
    expect((await crls.getCrl(full))?.crlNumber).toBe(9);

    // Rows as SQL writes them, not through commitIssuance: states no request could make.
    const insert = { run: (...values: unknown[]) => sql(
      `INSERT INTO certificates (serial, issuer_key_id, sans, subject_cn, not_before, not_after, der, provisioner, token_id, status, revoked_at, revocation_reason, created_at)
       VALUES (?, ?, '{"dns":[],"ip":[],"uri":[]}', NULL, 0, ?, ?, 'bootstrap', NULL, ?, ?, ?, 0)`,
      [values[0], values[1], values[2], Buffer.of(0), ...values.slice(3)],
    ) };
    await insert.run("01", "aa", 5_000, "revoked", 1_200_700, 1);
    await insert.run("02", "aa", 1_000, "revoked", 100, 4); // expired by t=2000
    await insert.run("03", "aa", 5_000, "valid", null, null);
    await insert.run("04", "bb", 5_000, "revoked", 50, 0); // another issuer's
    await insert.run("05", "aa", 5_000, "revoked", -1_500, null); // seconds are floored, also before 1970
    await insert.run("06", "aa", 5_000, "revoked", 250_000, 5);
    await insert.run("ff00", "aa", 5_000, "revoked", 3_000, 0);
    // Serial order, only this issuer's unexpired revocations, page by page after a serial.
    const scope = { issuerKeyId: "aa", shard: null };
    const page = (after: string | null, limit: number) => crls.revokedPage(scope, new Date(2_000), after as SerialHex | null, limit);
    expect(unpackRevokedPage(await page(null, 10))).toEqual([
      ["01", 1_200_000, 1],
      ["05", -2_000, null],
      ["06", 250_000, 5],
      ["ff00", 3_000, 0],
    ]);
    expect(await page(null, 2)).toMatchObject({ count: 2, lastSerial: "05" });
    expect(unpackRevokedPage(await page(null, 2))).toEqual([
      ["01", 1_200_000, 1],
      ["05", -2_000, null],
    ]);
    expect(unpackRevokedPage(await page("05", 2))).toEqual([["06", 250_000, 5], ["ff00", 3_000, 0]]);
    expect(await page("ff00", 2)).toEqual({ count: 0, lastSerial: null, bytes: Buffer.alloc(0) });
    // The SQL packing equals the slow path: the rows as the driver reads them, packed in JS.
    const rows = (await sql(
      "SELECT serial, revoked_at, revocation_reason FROM certificates WHERE issuer_key_id = 'aa' AND status = 'revoked' AND not_after > 2000 ORDER BY serial",
    )) as unknown as RevokedRow[];
    expect(Buffer.from((await page(null, 10)).bytes).equals(Buffer.from(packRevokedRows(rows).bytes))).toBe(true);
    expect(await crls.countRevoked(scope, new Date(2_000))).toBe(4);
    expect(await crls.countRevoked(scope, new Date(500))).toBe(5);
    // A serial the store should never hold (odd length, too long, not hex) fails the page or
    // the build at that entry; it never shifts the entries after it.
    const odd = { issuerKeyId: "bb", shard: null };
    await insert.run("abc", "bb", 5_000, "revoked", 0, null);
    await insert.run("abcd", "bb", 5_000, "revoked", 0, null);
    await expect(crls.revokedPage(odd, new Date(2_000), null, 10)).rejects.toThrow(/not hex/);
    await sql("DELETE FROM certificates WHERE serial = 'abc'");
    await insert.run("ab".repeat(21), "bb", 5_000, "revoked", 0, null);
    const tooLong = await crls.revokedPage(odd, new Date(2_000), null, 10);
    expect(() => encodePage(tooLong)).toThrow(/bad serial/);
    await sql("UPDATE certificates SET serial = 'zz' WHERE serial = ?", ["ab".repeat(21)]);
    await expect(crls.revokedPage(odd, new Date(2_000), null, 10)).rejects.toThrow(/not hex/);
  });
});

describe("schema migration v6 (CRL entry records in the revoked-certificate indexes)", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("fills the records of rows revoked before it, keeps them for later revocations, and every page equals the rows packed in JS", () => {
    const path = join(ws.dir, "v5.db");
    const db = new Database(path);
    db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
    for (const m of MIGRATIONS.filter((m) => m.version <= 5)) {
      db.exec(m.sqlite);
      db.prepare("INSERT INTO schema_migrations VALUES (?, ?, 0)").run(m.version, m.name);
    }
    db.prepare("INSERT INTO issuers (key_id, role, key_name, parent_key_id, der, not_before, not_after, status, created_at) VALUES ('aa', 'intermediate', 'k', NULL, x'00', 0, 1, 'active', 0)").run();
    const insert = db.prepare(
      `INSERT INTO certificates (serial, issuer_key_id, sans, subject_cn, not_before, not_after, der, provisioner, token_id, status, revoked_at, revocation_reason, created_at, crl_shard)
       VALUES (?, 'aa', '{"dns":[],"ip":[],"uri":[]}', NULL, 0, 9e12, x'00', 'bootstrap', NULL, ?, ?, ?, 0, ?)`,
    );
    // Serials with and without the top bit, 1 to 20 octets; times before 1970, in UTCTime's and
    // GeneralizedTime's ranges, with milliseconds to floor; every reason and none.
    const times = [-1_500, 0, 1_700_000_000_999, 2_600_000_000_123, 32_503_680_000_000];
    const reasons = [null, 0, 1, 2, 3, 4, 5, 6, 8, 9, 10];
    const used = new Set<string>();
    const serial = (i: number): string => {
      const b = randomBytes(1 + (i % 20));
      b[0] = b[0]! || 1; // minimal, as the store's serials are (a leading 00 octet is refused)
      const hex = b.toString("hex");
      if (used.has(hex)) return serial(i + 1); // one-octet serials collide
      used.add(hex);
      return hex;
    };
    db.transaction(() => {
      for (let i = 0; i < 300; i++) insert.run(serial(i), "revoked", times[i % times.length], reasons[i % reasons.length], i % 3);
      for (let i = 0; i < 50; i++) insert.run(serial(i), "valid", null, null, i % 3);
    })();
    db.close();

    const store = new SqliteStore(path);
    try {
      expect(store.db.prepare("SELECT MAX(version) FROM schema_migrations").pluck().get()).toBe(MIGRATIONS.at(-1)!.version);
      // Revoked after the migration, through the store's own revoking UPDATE.
      const valid = store.db.prepare("SELECT serial FROM certificates WHERE status = 'valid'").pluck().all() as SerialHex[];
      valid.slice(0, 25).forEach((s, i) => expect(store.revokeCertificate(s, new Date(times[i % times.length]!), (i % 2 === 0 ? 1 : 0) as never).outcome).toBe("revoked"));
      const reference = (shard: number | null) =>
        store.db
          .prepare(`SELECT serial, revoked_at, revocation_reason FROM certificates WHERE status = 'revoked' AND (? IS NULL OR crl_shard = ?) ORDER BY serial`)
          .raw()
          .all(shard, shard) as RevokedRow[];
      for (const shard of [null, 0, 1, 2]) {
        const scope = { issuerKeyId: "aa", shard };
        const pages: RevokedPage[] = [];
        let after: SerialHex | null = null;
        for (;;) {
          const p = store.revokedPage(scope, new Date(1_000), after, 17);
          pages.push(p);
          if (p.count < 17) break;
          after = p.lastSerial;
        }
        const rows = reference(shard);
        expect(rows.length, `shard ${shard}`).toBeGreaterThan(shard === null ? 300 : 90);
        expect(Buffer.concat(pages.map((p) => Buffer.from(p.bytes))).equals(Buffer.from(packRevokedRows(rows).bytes)), `shard ${shard}`).toBe(true);
        // And the writer accepts every page as the store hands it (order, serial shapes, reasons, lastSerial).
        const w = new CrlWriter([], 0);
        for (const p of pages) w.addPage(p);
        expect(w.count).toBe(rows.length);
      }
    } finally {
      store.close();
    }
  });
});

describe("crl config", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it.each([
    ["validity equal to interval", "crl: { interval: 1h, validity: 1h }\n", /crl\.validity: must be longer than crl\.interval/],
    ["validity shorter than interval", "crl: { interval: 2h, validity: 90m }\n", /crl\.validity: must be longer than crl\.interval/],
    ["an interval under a minute", "crl: { interval: 30s }\n", /crl\.interval: must be at least 1m/],
    ["a bad duration", "crl: { validity: soon }\n", /crl\.validity: invalid duration "soon"/],
    ["an unknown crl key", "crl: { every: 1h }\n", /crl: unknown key\(s\) every/],
  ])("refuses %s at start-up with one line naming the key", async (_name, yaml, expected) => {
    writeFileSync(ws.configPath, `dataDir: ${ws.dataDir}\nlisten: { api: "127.0.0.1:0", public: "127.0.0.1:0" }\n${yaml}`);
    const r = await ws.cli(["serve"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^fleetca: [^\n]+\n$/);
    expect(r.stderr).toMatch(expected);
  });
});
