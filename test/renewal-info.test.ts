import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "node:https";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued, type SignAnswer } from "./harness/ca-client.js";
import { postApi, signBody } from "./harness/http.js";
import { makeCsr } from "./harness/openssl.js";
import { inParallel } from "./harness/bulk.js";
import { fetchRenewalInfo, parseRetryAfter, pickRenewalTime } from "../src/agent/renewal-info.js";
import { AgentError } from "../src/agent/errors.js";
import { RENEW_FRACTION, RENEW_JITTER } from "../src/agent/schedule.js";
import type { SerialHex } from "../src/core/serial.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";
import { ManualClock } from "../src/core/clock.js";
import { OperatorError } from "../src/core/errors.js";
import { pullRenewalWindows, renewalSelectorOf } from "../src/registration/renewal-override.js";
import { RENEWAL_OVERRIDE_SQL, RENEWAL_SUBJECT_SQL, SqliteRenewalWindows } from "../src/storage/sqlite/sqlite-renewal-windows.js";
import { STORAGE_BACKENDS, useStorageBackend } from "./harness/storage-backends.js";

const HOUR = 3_600_000;

interface InfoResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** GET /v1/renewal-info/<serial> as any host makes it: no client certificate, the CA's roots only. */
function getRenewalInfo(apiUrl: string, roots: string, serial: string): Promise<InfoResponse> {
  return new Promise((resolve, reject) => {
    const req = request(`${apiUrl}/v1/renewal-info/${serial}`, { method: "GET", ca: roots, agent: false }, (res) => {
      let raw = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (raw += d));
      res.on("end", () => {
        let body: unknown = null;
        try {
          body = JSON.parse(raw);
        } catch {
          body = raw;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** [notBefore + life × (2/3 − 1/20), notBefore + life × (2/3 + 1/20)] of an issued certificate, in ms. */
function defaultWindow(c: Pick<Issued, "notBefore" | "notAfter">): { start: number; end: number } {
  const nb = Date.parse(c.notBefore);
  const life = Date.parse(c.notAfter) - nb;
  return { start: nb + life * (2 / 3 - 1 / 20), end: nb + life * (2 / 3 + 1 / 20) };
}

function windowOf(r: InfoResponse): { start: number; end: number } {
  return { start: Date.parse(r.body.suggestedWindow.start), end: Date.parse(r.body.suggestedWindow.end) };
}

describe("GET /v1/renewal-info and fleetca renew-window (real daemon, real HTTPS)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  /** Issues through the second bootstrap provisioner. */
  let fleetB: CaClient;
  let issuerKeyId: string;

  const info = (serial: string) => getRenewalInfo(d.apiUrl, ca.roots, serial);
  const overrideRows = () => {
    const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    try {
      return db.prepare("SELECT COUNT(*) FROM renewal_windows").pluck().get() as number;
    } finally {
      db.close();
    }
  };

  /**
   * `n` certificates through `client`'s provisioner, one token each, all for one CSR: a window
   * depends on times, not keys, and one `openssl req` instead of one per certificate keeps the
   * file quick on a busy machine.
   */
  const issueMany = async (client: CaClient, prefix: string, n: number): Promise<SignAnswer[]> => {
    const csr = makeCsr(ws.dir, `${prefix}-shared`);
    return inParallel(n, 4, async (i) => {
      const token = await ws.token(`${prefix}-${i}`, [`${prefix}-${i}.internal`], client.tokenArgs);
      const r = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem) });
      expect(r.status, r.raw).toBe(201);
      return r.body as SignAnswer;
    });
  };

  beforeAll(async () => {
    ws = new CaWorkspace({ extraConfig: "provisioners:\n  - { name: bootstrap, type: bootstrap }\n  - { name: fleet-b, type: bootstrap }\n" });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    fleetB = await new CaClient(ws, d.apiUrl, d.publicUrl, ["--provisioner", "fleet-b"]).init();
    const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    try {
      issuerKeyId = db.prepare("SELECT key_id FROM issuers WHERE role = 'intermediate' AND status = 'active'").pluck().get() as string;
    } finally {
      db.close();
    }
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("suggests the 2/3 ± 1/20 window of the certificate's life, polled every 5 minutes", async () => {
    const c = await ca.issue("default-1");
    const r = await info(c.serial);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^application\/json/);
    expect(Object.keys(r.body).sort()).toEqual(["status", "suggestedWindow"]);
    expect(r.body.status).toBe("good");
    const w = defaultWindow(c);
    // The certificate's times are whole seconds; the window is computed from them to the millisecond.
    expect(Math.abs(windowOf(r).start - w.start)).toBeLessThanOrEqual(1);
    expect(Math.abs(windowOf(r).end - w.end)).toBeLessThanOrEqual(1);
    expect(RENEW_FRACTION).toBe(2 / 3);
    expect(RENEW_JITTER).toBe(1 / 20);
    expect(r.headers["retry-after"]).toBe("300");
    expect(r.headers["cache-control"]).toBe("public, max-age=300");
    // The serial as a browser or `openssl x509 -serial` shows it finds the same certificate.
    const loud = await info(`serial=${c.serial.toUpperCase()}`);
    expect(loud.status).toBe(200);
    expect(loud.body).toEqual(r.body);
  });

  it("asks sooner when the window opens within the 5-minute poll interval", async () => {
    // 6 min + 1 min backdating: the window opens ~3.3 min from now.
    const c = await ca.issue("short-1", ["short-1.internal"], { ttl: "6m" });
    const r = await info(c.serial);
    expect(r.status).toBe(200);
    const untilStart = (windowOf(r).start - Date.now()) / 1000;
    const retry = Number(r.headers["retry-after"]);
    expect(untilStart).toBeGreaterThan(60);
    expect(untilStart).toBeLessThan(300);
    expect(retry).toBeGreaterThanOrEqual(60);
    expect(retry).toBeLessThan(300);
    expect(Math.abs(retry - untilStart)).toBeLessThanOrEqual(5);
    expect(r.headers["cache-control"]).toBe(`public, max-age=${retry}`);
  });

  it("a revoked certificate: status revoked, a window that has begun (renew now)", async () => {
    const c = await ca.issue("revoked-1");
    const rv = await ca.revoke(c.identity, { serial: c.serial });
    expect(rv.status, rv.raw).toBe(200);
    const r = await info(c.serial);
    const after = Date.now();
    expect(r.status).toBe(200);
    expect(r.body.status).toBe("revoked");
    expect(windowOf(r).start).toBeLessThanOrEqual(after);
    expect(windowOf(r).end).toBeGreaterThan(windowOf(r).start);
    expect(r.body.explanation).toMatch(/revoked/);
    expect(r.headers["retry-after"]).toBe("60");
  });

  it("unknown serial: 404 not_found; malformed serial: 400 bad_request, never a 500", async () => {
    const unknown = await info("0123456789abcdef0123456789abcdef");
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: "not_found", message: expect.stringMatching(/no certificate/) });
    for (const bad of ["xyz", "abc", "0g", "zz".repeat(30), "ab".repeat(21), "%zz", "%00", "a%2Fb", "-1"]) {
      const r = await info(bad);
      expect(r.status, `${bad}: ${JSON.stringify(r.body)}`).toBe(400);
      expect(r.body.error, bad).toBe("bad_request");
      expect(r.headers["retry-after"], bad).toBeUndefined();
    }
  });

  it("fetchRenewalInfo (the agent's side) reads the window, the status, and refusals", async () => {
    const c = await ca.issue("agent-1");
    const i = await fetchRenewalInfo(d.apiUrl, ca.roots, c.serial);
    const w = defaultWindow(c);
    expect(Math.abs(i.start.getTime() - w.start)).toBeLessThanOrEqual(1);
    expect(Math.abs(i.end.getTime() - w.end)).toBeLessThanOrEqual(1);
    expect(i.status).toBe("good");
    expect(i.retryAfterMs).toBe(300_000);
    expect(i.explanation).toBeUndefined();
    const refused = await fetchRenewalInfo(d.apiUrl, ca.roots, "0123456789abcdef0123456789abcdef").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AgentError);
    expect((refused as AgentError).status).toBe(404);
    expect((refused as AgentError).message).toMatch(/not_found/);
    await expect(fetchRenewalInfo(d.apiUrl, ca.roots, "../v1/sign")).rejects.toThrow(/not a certificate serial/);
    // Trusting other roots than the CA's: the TLS handshake fails, no answer is believed.
    await expect(fetchRenewalInfo(d.apiUrl, "", c.serial, 5_000)).rejects.toThrow(AgentError);
  });

  it("renew-window --provisioner pulls that provisioner's live certificates forward and leaves the others alone", async () => {
    const ours = await issueMany(fleetB, "b", 4);
    const others = await issueMany(ca, "a", 3);
    const t0 = Date.now();
    const cmd = await ws.cli(["renew-window", "--provisioner", "fleet-b", "--by", "2h"]);
    const t1 = Date.now();
    expect(cmd.code, cmd.stderr).toBe(0);
    expect(cmd.stdout).toMatch(/^matched 4 live certificates \(provisioner fleet-b\): renewal window \S+Z to \S+Z\n$/);
    for (const c of ours) {
      const r = await info(c.serial);
      const w = windowOf(r);
      expect(w.start).toBeGreaterThanOrEqual(t0 - 1000);
      expect(w.start).toBeLessThanOrEqual(t1);
      expect(w.end - w.start).toBe(2 * HOUR);
      expect(r.body.status).toBe("good");
      expect(r.body.explanation).toMatch(/provisioner fleet-b/);
    }
    for (const c of others) {
      const r = await info(c.serial);
      expect(Math.abs(windowOf(r).end - defaultWindow(c).end)).toBeLessThanOrEqual(1);
      expect(r.body.explanation).toBeUndefined();
    }
  });

  it("renew-window --issuer K --by 1h: every live certificate of K renews within the hour; later ones get the normal window", async () => {
    const fleet = await issueMany(ca, "fleet", 20);
    // Its own window ends in ~4.5 minutes, before the pulled one: it keeps its own.
    const short = await ca.issue("fleet-short", ["fleet-short.internal"], { ttl: "6m" });
    const revoked = await ca.issue("fleet-revoked");
    expect((await ca.revoke(revoked.identity, { serial: revoked.serial })).status).toBe(200);

    const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    const live = db.prepare("SELECT COUNT(*) FROM certificates WHERE issuer_key_id = ? AND status = 'valid' AND not_after > ?").pluck().get(issuerKeyId, Date.now()) as number;
    db.close();
    const t0 = Date.now();
    // Key ids are forgiven their case and colons, as openssl prints them.
    const cmd = await ws.cli(["renew-window", "--issuer", issuerKeyId.toUpperCase().match(/../g)!.join(":"), "--by", "1h"]);
    const t1 = Date.now();
    expect(cmd.code, cmd.stderr).toBe(0);
    expect(cmd.stdout.split("\n").filter(Boolean)).toHaveLength(1);
    expect(cmd.stdout).toContain(`matched ${live} live certificates (issuer ${issuerKeyId})`);
    // The earlier tests' certificates (several) and this one's 21, minus nothing revoked.
    expect(live).toBeGreaterThanOrEqual(22);

    const windows = await inParallel(fleet.length, 8, async (i) => windowOf(await info(fleet[i]!.serial)));
    for (const w of windows) {
      expect(w.start).toBeGreaterThanOrEqual(t0 - 1000);
      expect(w.start).toBeLessThanOrEqual(t1);
      expect(w.end).toBeLessThanOrEqual(t1 + HOUR);
      expect(w.end - w.start).toBe(HOUR);
    }
    const s = await info(short.serial);
    expect(Math.abs(windowOf(s).end - defaultWindow(short).end)).toBeLessThanOrEqual(1);
    expect(s.body.explanation).toBeUndefined();
    // Revoked stays "renew now", whatever the override.
    expect((await info(revoked.serial)).body.status).toBe("revoked");

    // Issued, and renewed, after the command: the normal window.
    const after = await ca.issue("fleet-after");
    const a = await info(after.serial);
    expect(Math.abs(windowOf(a).end - defaultWindow(after).end)).toBeLessThanOrEqual(1);
    expect(a.body.explanation).toBeUndefined();
    const renewed = await ca.renew(short.identity);
    expect(renewed.status, renewed.raw).toBe(201);
    const rw = await info(renewed.body.serial);
    expect(Math.abs(windowOf(rw).end - defaultWindow(renewed.body).end)).toBeLessThanOrEqual(1);
  });

  it("renew-window refuses operator mistakes with one line, recording nothing", async () => {
    const c = await ca.issue("mistake-1");
    const before = overrideRows();
    // The CLI's own paths (spawned); the other refusals of renewalSelectorOf are checked in-process below.
    const cases: Array<[string[], RegExp]> = [
      [["--by", "1h"], /exactly one of --issuer, --provisioner, --serial/],
      [["--issuer", issuerKeyId, "--provisioner", "bootstrap", "--by", "1h"], /exactly one of/],
      [["--issuer", "deadbeef", "--by", "1h"], /--issuer: no issuer with key id "deadbeef"/],
      [["--issuer", issuerKeyId, "--by", "10s"], /--by: must be at least 1m/],
    ];
    // Spawned together (each CLI start costs a second or two on a busy machine), the well-formed
    // one among them: afterwards exactly its row is new.
    const [ok, ...results] = await Promise.all([
      ws.cli(["renew-window", "--serial", c.serial, "--by", "30m"]),
      ...cases.map(([args]) => ws.cli(["renew-window", ...args])),
    ]);
    results.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stdout, args.join(" ")).toBe("");
      expect(r.stderr, args.join(" ")).toMatch(/^fleetca: [^\n]+\n$/);
      expect(r.stderr, args.join(" ")).toMatch(message);
    });
    expect(ok!.code, ok!.stderr).toBe(0);
    expect(ok!.stdout).toMatch(/^matched 1 live certificate \(serial [0-9a-f]+\)/);
    expect(overrideRows()).toBe(before + 1);
    const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    expect(db.prepare("SELECT kind, value FROM renewal_windows ORDER BY id DESC LIMIT 1").get()).toEqual({ kind: "serial", value: c.serial });
    db.close();
    const w = windowOf(await info(c.serial));
    expect(w.end - w.start).toBe(30 * 60_000);
  });
});

describe("GET /v1/renewal-info served by an API worker (listen.apiWorkers: 1)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  beforeAll(async () => {
    ws = new CaWorkspace({ listen: "apiWorkers: 1" });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("answers from the shared database, and sees an override another process wrote at once", async () => {
    expect(d.output).toMatch(/msg="api listening" url=\S+ workers=1/);
    const c = await ca.issue("worker-1");
    const before = await getRenewalInfo(d.apiUrl, ca.roots, c.serial);
    expect(before.status).toBe(200);
    expect(Math.abs(windowOf(before).end - defaultWindow(c).end)).toBeLessThanOrEqual(1);
    expect(before.headers["retry-after"]).toBe("300");
    // What `fleetca renew-window --serial` records, written from this (third) process.
    const store = new SqliteStore(join(ws.dataDir, "fleetca.db"));
    const now = new Date();
    try {
      const r = await new SqliteRenewalWindows(store.db).recordRenewalOverride(
        { kind: "serial", value: c.serial, start: now, end: new Date(now.getTime() + HOUR), createdAt: now },
        now,
      );
      expect(r.matched).toBe(1);
    } finally {
      store.close();
    }
    const after = await getRenewalInfo(d.apiUrl, ca.roots, c.serial);
    expect(windowOf(after)).toEqual({ start: now.getTime(), end: now.getTime() + HOUR });
    expect((await getRenewalInfo(d.apiUrl, ca.roots, "zz")).body.error).toBe("bad_request");
  });
});

describe("renewalSelectorOf and pullRenewalWindows (the command's checks, in-process)", () => {
  const known = { issuerKeyIds: ["ab12cd"], provisioners: ["bootstrap"], hasCertificate: (s: string) => s === "0a0b" };
  it("takes exactly one selector naming something the CA has", () => {
    expect(renewalSelectorOf({ issuer: "AB:12:CD" }, known)).toEqual({ kind: "issuer", value: "ab12cd" });
    expect(renewalSelectorOf({ provisioner: "bootstrap" }, known)).toEqual({ kind: "provisioner", value: "bootstrap" });
    expect(renewalSelectorOf({ serial: "0A:0B" }, known)).toEqual({ kind: "serial", value: "0a0b" });
    expect(() => renewalSelectorOf({}, known)).toThrow(OperatorError);
    expect(() => renewalSelectorOf({ issuer: "ab12cd", serial: "0a0b" }, known)).toThrow(/exactly one of/);
    expect(() => renewalSelectorOf({ provisioner: "nobody" }, known)).toThrow(/--provisioner: no provisioner named "nobody"/);
    expect(() => renewalSelectorOf({ serial: "xyz" }, known)).toThrow(/--serial: "xyz" is not a serial/);
    expect(() => renewalSelectorOf({ serial: "0c0d" }, known)).toThrow(/--serial: no certificate with serial 0c0d/);
  });
  it("refuses a window under a minute before writing anything", async () => {
    let writes = 0;
    const store = {
      recordRenewalOverride: async () => {
        writes++;
        return { matched: 0 };
      },
    };
    const clock = new ManualClock(new Date("2026-12-02T10:00:00Z"));
    await expect(pullRenewalWindows(store, { kind: "issuer", value: "ab12cd" }, 59_999, clock)).rejects.toThrow(/--by: must be at least 1m/);
    expect(writes).toBe(0);
    const r = await pullRenewalWindows(store, { kind: "issuer", value: "ab12cd" }, 60_000, clock);
    expect(writes).toBe(1);
    expect(r.window).toEqual({ start: clock.now(), end: new Date(clock.now().getTime() + 60_000) });
  });
});

describe("pickRenewalTime (uniform in the window, never before now)", () => {
  const start = new Date("2026-12-02T10:00:00Z");
  const end = new Date("2026-12-02T11:00:00Z");

  it("spreads draws uniformly over a window still to come", () => {
    const now = new Date("2026-12-02T09:00:00Z");
    const buckets = new Array(10).fill(0);
    const n = 20_000;
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < n; i++) {
      const t = pickRenewalTime({ start, end }, now, Math.random()).getTime();
      min = Math.min(min, t);
      max = Math.max(max, t);
      buckets[Math.floor(((t - start.getTime()) / (end.getTime() - start.getTime())) * 10)]++;
    }
    expect(min).toBeGreaterThanOrEqual(start.getTime());
    expect(max).toBeLessThan(end.getTime());
    // Each tenth of the window gets ~2,000 draws; a bias towards either end would show here.
    for (const b of buckets) expect(Math.abs(b - n / 10)).toBeLessThan(n / 10 / 5);
    expect(pickRenewalTime({ start, end }, now, 0).getTime()).toBe(start.getTime());
    expect(pickRenewalTime({ start, end }, now, 0.5).getTime()).toBe(start.getTime() + 30 * 60_000);
  });

  it("inside an open window: only what is left of it, never before now", () => {
    const now = new Date("2026-12-02T10:45:00Z");
    for (const r of [0, 0.25, 0.999999]) {
      const t = pickRenewalTime({ start, end }, now, r).getTime();
      expect(t).toBeGreaterThanOrEqual(now.getTime());
      expect(t).toBeLessThanOrEqual(end.getTime());
    }
    expect(pickRenewalTime({ start, end }, now, 0.5).getTime()).toBe(now.getTime() + 7.5 * 60_000);
  });

  it("a window in the past means now", () => {
    const now = new Date("2026-12-02T12:00:00Z");
    for (const r of [0, 0.5, 0.999]) expect(pickRenewalTime({ start, end }, now, r).getTime()).toBe(now.getTime());
  });
});

describe("parseRetryAfter (RFC 9110 §10.2.3, clamped as RFC 9773 §4.3 asks)", () => {
  const now = new Date("2026-12-02T10:00:00Z");
  it("reads delay-seconds and HTTP-dates, clamped to [1 min, 1 day]", () => {
    expect(parseRetryAfter("300", now)).toBe(300_000);
    expect(parseRetryAfter("5", now)).toBe(60_000);
    expect(parseRetryAfter("999999", now)).toBe(24 * HOUR);
    expect(parseRetryAfter("Wed, 02 Dec 2026 10:10:00 GMT", now)).toBe(600_000);
    expect(parseRetryAfter("soon", now)).toBeNull();
    expect(parseRetryAfter("-5", now)).toBeNull();
  });
});

describe("renewal_windows lookup stays indexed (2,000 certificates, many overrides)", () => {
  let dir: string;
  let store: SqliteStore;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "renewal-index-"));
    store = new SqliteStore(join(dir, "fleetca.db"));
    const db = store.db;
    db.prepare("INSERT INTO issuers (key_id, role, key_name, der, not_before, not_after, created_at) VALUES ('aa', 'intermediate', 'k', x'00', 0, 9e15, 0)").run();
    db.prepare("INSERT INTO issuers (key_id, role, key_name, der, not_before, not_after, created_at) VALUES ('bb', 'intermediate', 'k2', x'00', 0, 9e15, 0)").run();
    const insert = db.prepare(`INSERT INTO certificates (serial, issuer_key_id, sans, not_before, not_after, der, provisioner, created_at)
      VALUES (?, ?, '{"dns":[],"ip":[],"uri":[]}', ?, ?, x'00', ?, ?)`);
    const windows = new SqliteRenewalWindows(db);
    db.transaction(() => {
      for (let i = 0; i < 2_000; i++) {
        const nb = 1_000_000 + i * 1_000;
        insert.run(i.toString(16).padStart(8, "0"), i % 2 ? "aa" : "bb", nb, nb + 24 * HOUR, i % 3 ? "p1" : "p2", nb);
      }
    })();
    // Overrides at several times, for every kind, so the planner has a table worth searching.
    for (let i = 0; i < 300; i++) {
      const at = 1_000_000 + i * 3_000;
      const kind = (["issuer", "provisioner", "serial"] as const)[i % 3]!;
      const value = kind === "issuer" ? (i % 2 ? "aa" : "bb") : kind === "provisioner" ? (i % 2 ? "p1" : "p2") : (i * 5).toString(16).padStart(8, "0");
      windows.recordOverride({ kind, value, start: new Date(at), end: new Date(at + HOUR + (i % 7) * 60_000), createdAt: new Date(at) }, new Date(at));
    }
    db.exec("ANALYZE");
  });
  afterAll(() => {
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("both queries search indexes (EXPLAIN QUERY PLAN): no SCAN of certificates or renewal_windows", () => {
    const plan = (sql: string, ...args: unknown[]) =>
      (store.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as Array<{ detail: string }>).map((r) => r.detail);
    const subject = plan(RENEWAL_SUBJECT_SQL, "000000ff");
    expect(subject.join("\n")).toMatch(/SEARCH certificates USING INDEX sqlite_autoindex_certificates_1 \(serial=\?\)/);
    const override = plan(RENEWAL_OVERRIDE_SQL, { issuer: "aa", provisioner: "p1", serial: "000000ff", issuedAt: 1_000_000 });
    const searches = override.filter((l) => /SEARCH renewal_windows USING INDEX renewal_windows_by_selector \(kind=\? AND value=\? AND created_at>\?\)/.test(l));
    expect(searches, override.join("\n")).toHaveLength(3);
    for (const l of [...subject, ...override]) expect(l, [...subject, ...override].join("\n")).not.toMatch(/^SCAN/);
  });
});

/**
 * Which override applies, on each adapter (the query plan above is SQLite's own): the same
 * certificates and overrides, the choice checked against a plain query of the table.
 */
describe.each(STORAGE_BACKENDS)("renewal override selection on %s (2,000 certificates, 300 overrides)", (backendName) => {
  const backend = useStorageBackend(backendName);

  it("applies the override that ends first among those recorded after the certificate", async () => {
    const storage = await backend.fresh();
    const sql = backend.sql(storage);
    for (const keyId of ["aa", "bb"]) {
      await storage.issuers.addIssuer({ keyId, role: "intermediate", keyName: `k-${keyId}`, parentKeyId: null, der: Uint8Array.of(0), notBefore: new Date(0), notAfter: new Date(4e12), status: "active", createdAt: new Date(0), revokedAt: null, revocationReason: null, activatedAt: null });
    }
    // Rows as SQL writes them, 250 to a statement (one round trip each on PostgreSQL).
    for (let from = 0; from < 2_000; from += 250) {
      const values: unknown[] = [];
      for (let i = from; i < from + 250; i++) {
        const nb = 1_000_000 + i * 1_000;
        values.push(i.toString(16).padStart(8, "0"), i % 2 ? "aa" : "bb", nb, nb + 24 * HOUR, Buffer.of(0), i % 3 ? "p1" : "p2", nb);
      }
      await sql(
        `INSERT INTO certificates (serial, issuer_key_id, sans, not_before, not_after, der, provisioner, created_at) VALUES ${Array(250).fill(`(?, ?, '{"dns":[],"ip":[],"uri":[]}', ?, ?, ?, ?, ?)`).join(", ")}`,
        values,
      );
    }
    for (let i = 0; i < 300; i++) {
      const at = 1_000_000 + i * 3_000;
      const kind = (["issuer", "provisioner", "serial"] as const)[i % 3]!;
      const value = kind === "issuer" ? (i % 2 ? "aa" : "bb") : kind === "provisioner" ? (i % 2 ? "p1" : "p2") : (i * 5).toString(16).padStart(8, "0");
      await storage.renewalWindows.recordRenewalOverride({ kind, value, start: new Date(at), end: new Date(at + HOUR + (i % 7) * 60_000), createdAt: new Date(at) }, new Date(at));
    }
    const windows = storage.requests;
    // Certificate number 500: issuer bb, provisioner p1, created at 1,500,000; overrides 167 to 299 follow it.
    const s = (await windows.renewalSubject((500).toString(16).padStart(8, "0") as SerialHex))!;
    expect(s.createdAt.getTime()).toBe(1_500_000);
    const [candidate] = await sql(
      `SELECT window_end, created_at FROM renewal_windows WHERE created_at > ? AND ((kind = 'issuer' AND value = ?) OR (kind = 'provisioner' AND value = ?) OR (kind = 'serial' AND value = ?))
       ORDER BY window_end, created_at LIMIT 1`,
      [s.createdAt.getTime(), s.issuerKeyId, s.provisioner, s.serial],
    );
    expect(s.override).not.toBeNull();
    expect(s.override!.end.getTime()).toBe(candidate![0]);
    expect(s.override!.createdAt.getTime()).toBeGreaterThan(s.createdAt.getTime());
    // The newest certificate was issued after every override: none applies.
    const last = (await windows.renewalSubject((1_999).toString(16).padStart(8, "0") as SerialHex))!;
    expect(last.createdAt.getTime()).toBeGreaterThan(1_000_000 + 299 * 3_000);
    expect(last.override).toBeNull();
    expect(await windows.renewalSubject("ffffffff" as SerialHex)).toBeNull();
  });
});
