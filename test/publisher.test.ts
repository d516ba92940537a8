/**
 * cert-agent's publisher with more than one writer (issue 13): two processes publishing into one
 * directory while a third reads it, plus the lock's and the clean-up's edge cases.
 */
import { execFile, spawn } from "node:child_process";
import { createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { publishSet, readCurrentSet, retireSuperseded } from "../src/agent/publisher.js";
import { startReader } from "./harness/cert-agent.js";
import { openssl } from "./harness/openssl.js";

const PUBLISHER_JS = resolve(import.meta.dirname, "../dist/agent/publisher.js");

/** A separate process publishing `count` sets from `pairs.json`, reporting how many succeeded and how the others failed. */
const WRITER = `
import { readFileSync } from "node:fs";
const [publisher, dir, pairsFile, count, tag] = process.argv.slice(2);
const { publishSet } = await import(publisher);
const pairs = JSON.parse(readFileSync(pairsFile, "utf8"));
const r = { ok: 0, failed: 0, errors: [] };
for (let i = 0; i < Number(count); i++) {
  const p = pairs[(i + Number(tag)) % pairs.length];
  try {
    publishSet(dir, [
      { name: "key.pem", data: p.key, mode: 0o600 },
      { name: "cert.pem", data: p.cert, mode: 0o644 },
      { name: "chain.pem", data: p.cert, mode: 0o644 },
      ...(i % 3 === 0 ? [] : [{ name: "ocsp.der", data: Buffer.from("ocsp " + i), mode: 0o644 }]),
    ], new Date());
    r.ok++;
  } catch (e) {
    r.failed++;
    if (r.errors.length < 5) r.errors.push(String(e.message));
  }
}
process.stdout.write(JSON.stringify(r));
`;

function runWriter(script: string, dir: string, pairsFile: string, count: number, tag: number): Promise<{ ok: number; failed: number; errors: string[] }> {
  return new Promise((resolvePromise, reject) => {
    execFile(process.execPath, [script, PUBLISHER_JS, dir, pairsFile, String(count), String(tag)], { maxBuffer: 1 << 20 }, (err, stdout) =>
      err ? reject(err) : resolvePromise(JSON.parse(stdout)),
    );
  });
}

describe("publisher with several writers", () => {
  let dir: string;
  let pairs: { key: string; cert: string }[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "fleetca-publisher-"));
    pairs = [0, 1, 2, 3].map((i) => {
      const keyPath = join(dir, `k${i}.pem`);
      const cert = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyPath, "-subj", `/CN=p${i}`, "-days", "1"]);
      return { key: readFileSync(keyPath, "utf8"), cert };
    });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const files = (i: number, ocsp: boolean) => [
    { name: "key.pem", data: pairs[i % 4]!.key, mode: 0o600 },
    { name: "cert.pem", data: pairs[i % 4]!.cert, mode: 0o644 },
    ...(ocsp ? [{ name: "ocsp.der", data: Buffer.from(`ocsp ${i}`), mode: 0o644 }] : []),
  ];

  it("two publishing processes and a reader over 300 publications: every publication succeeds, no read is missing or mismatched", async () => {
    const out = join(dir, "two-writers");
    publishSet(out, files(0, true), new Date());
    const pairsFile = join(dir, "pairs.json");
    writeFileSync(pairsFile, JSON.stringify(pairs), { mode: 0o600 });
    const script = join(dir, "writer.mjs");
    writeFileSync(script, WRITER);
    const reader = startReader(out, dir);
    await new Promise((r) => setTimeout(r, 300));
    const [a, b] = await Promise.all([runWriter(script, out, pairsFile, 150, 0), runWriter(script, out, pairsFile, 150, 1)]);
    const report = await reader.stop();
    expect(a, JSON.stringify(a)).toMatchObject({ ok: 150, failed: 0 });
    expect(b, JSON.stringify(b)).toMatchObject({ ok: 150, failed: 0 });
    expect(report.missing, JSON.stringify(report)).toBe(0);
    expect(report.mismatched, JSON.stringify(report)).toBe(0);
    expect(report.consistent).toBeGreaterThan(50);
    // Nothing left behind but the live set and the one it replaced; no temporary link, no lock.
    const left = readdirSync(out);
    expect(left.filter((n) => /^\.\.\d/.test(n)).length).toBeLessThanOrEqual(2);
    expect(left.filter((n) => n.startsWith("..data_tmp") || n === "..lock" || n.endsWith(".tmp"))).toEqual([]);
    const cur = readCurrentSet(out, ["key.pem", "cert.pem"])!;
    expect(new X509Certificate(cur["cert.pem"]!).publicKey.export({ type: "spki", format: "der" })).toEqual(
      createPublicKey(cur["key.pem"]!).export({ type: "spki", format: "der" }),
    );
  }, 120_000);

  it("a publisher SIGKILLed at random moments, 20 times, under a reader: never a missing or mismatched read; the next publisher repairs", async () => {
    const out = join(dir, "killed");
    publishSet(out, files(0, true), new Date());
    const pairsFile = join(dir, "pairs.json");
    writeFileSync(pairsFile, JSON.stringify(pairs), { mode: 0o600 });
    const script = join(dir, "writer.mjs");
    writeFileSync(script, WRITER);
    const reader = startReader(out, dir);
    let killedMidRun = 0;
    for (let round = 0; round < 20; round++) {
      // A writer publishing back to back: wherever the kill lands, it is inside a publication
      // (writing a version, swapping ..data, relinking, cleaning up, or holding the lock).
      const before = readlinkSync(join(out, "..data"));
      const child = spawn(process.execPath, [script, PUBLISHER_JS, out, pairsFile, "100000", String(round)], { stdio: "ignore" });
      // Once it has swapped in a set of its own (node has started), kill it 0–40 ms later.
      const t0 = Date.now();
      while (readlinkSync(join(out, "..data")) === before && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 2));
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 40)));
      if (child.exitCode === null) killedMidRun++;
      child.kill("SIGKILL");
      await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once("exit", r)));
    }
    // The next publisher takes over the dead one's lock and removes what the kills left behind.
    const after = await runWriter(script, out, pairsFile, 3, 0);
    const report = await reader.stop();
    expect(killedMidRun).toBe(20);
    expect(after, JSON.stringify(after)).toMatchObject({ ok: 3, failed: 0 });
    expect(report.missing, JSON.stringify(report)).toBe(0);
    expect(report.mismatched, JSON.stringify(report)).toBe(0);
    expect(report.consistent).toBeGreaterThan(20);
    const left = readdirSync(out);
    expect(left.filter((n) => /^\.\.\d/.test(n)).length).toBeLessThanOrEqual(2);
    expect(left.filter((n) => n.startsWith("..data_tmp") || n === "..lock" || n.endsWith(".tmp"))).toEqual([]);
    const cur = readCurrentSet(out, ["key.pem", "cert.pem"])!;
    expect(new X509Certificate(cur["cert.pem"]!).publicKey.export({ type: "spki", format: "der" })).toEqual(
      createPublicKey(cur["key.pem"]!).export({ type: "spki", format: "der" }),
    );
  }, 120_000);

  it("removes ocsp.der's link when a set has no answer, and retires the replaced set", () => {
    const out = join(dir, "ocsp-link");
    publishSet(out, files(1, true), new Date());
    expect(readFileSync(join(out, "ocsp.der"), "utf8")).toBe("ocsp 1");
    const first = readdirSync(out).filter((n) => /^\.\.\d/.test(n));
    publishSet(out, files(2, false), new Date());
    expect(existsSync(join(out, "ocsp.der"))).toBe(false);
    expect(() => lstatSync(join(out, "ocsp.der"))).toThrow(); // no dangling link either
    expect(readdirSync(out).filter((n) => /^\.\.\d/.test(n))).toHaveLength(2);
    expect(retireSuperseded(out)).toBe(1);
    const left = readdirSync(out).filter((n) => /^\.\.\d/.test(n));
    expect(left).toHaveLength(1);
    expect(first).not.toContain(left[0]);
    expect(readCurrentSet(out, ["key.pem"])!["key.pem"]!.toString()).toBe(pairs[2]!.key);
  });

  it("removes a visible name's temporary link a killed publisher left (and nothing of the operator's that looks alike)", () => {
    const out = join(dir, "visible-tmp");
    publishSet(out, files(0, true), new Date());
    // Killed between symlink(..data/ocsp.der, .ocsp.der.RAND.tmp) and its rename over ocsp.der.
    symlinkSync("..data/ocsp.der", join(out, ".ocsp.der.9ad83839.tmp"));
    // Not ours: the same shape but a regular file, and a link elsewhere.
    writeFileSync(join(out, ".notes.0badc0de.tmp"), "operator");
    symlinkSync("/etc/hostname", join(out, ".hostname.0badc0de.tmp"));
    publishSet(out, files(1, true), new Date());
    const left = readdirSync(out);
    expect(left).not.toContain(".ocsp.der.9ad83839.tmp");
    expect(left).toContain(".notes.0badc0de.tmp");
    expect(left).toContain(".hostname.0badc0de.tmp");
    expect(readFileSync(join(out, "ocsp.der"), "utf8")).toBe("ocsp 1");
  });

  it("takes over a lock left by a dead publisher, and waits for a live one", async () => {
    const out = join(dir, "locks");
    mkdirSync(out, { recursive: true });
    // A pid that cannot be alive on this host: the lock is stale at once.
    writeFileSync(join(out, "..lock"), `2147483646 ${hostname()} ${Date.now()}\n`);
    publishSet(out, files(0, false), new Date());
    expect(existsSync(join(out, "..lock"))).toBe(false);
    // A live holder (this process, as another publisher would be): the publication waits until it is released.
    writeFileSync(join(out, "..lock"), `${process.pid} ${hostname()} ${Date.now()}\n`);
    const script = join(dir, "writer.mjs");
    const pairsFile = join(dir, "pairs.json");
    const started = Date.now();
    const writer = runWriter(script, out, pairsFile, 1, 0);
    await new Promise((r) => setTimeout(r, 700));
    rmSync(join(out, "..lock"));
    const r = await writer;
    expect(r).toMatchObject({ ok: 1, failed: 0 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
  }, 30_000);
});
