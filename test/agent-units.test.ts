import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPublicKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { ManualClock } from "../src/core/clock.js";
import { Agent, type LogFn } from "../src/agent/agent.js";
import { makeKeyAndCsr } from "../src/agent/csr.js";
import { publishSet, readCurrentSet } from "../src/agent/publisher.js";
import { backoffDelay, ocspRefreshTime, renewalTime } from "../src/agent/schedule.js";
import { acceptRoots, parseFingerprint, sha256Hex } from "../src/agent/trust.js";
import { decodeCsrPem, verifyCsr } from "../src/x509/csr.js";
import { allPem } from "../src/x509/pem.js";
import { openssl } from "./harness/openssl.js";
import { agentWorkspace, rootFingerprint, startReader } from "./harness/cert-agent.js";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";

const H = 3_600_000;

describe("schedule (pure, injected time and randomness)", () => {
  it("renews at 2/3 of the lifetime, jittered ±1/20, never later than 2/3+1/20", () => {
    const nb = new Date("2026-01-01T00:00:00Z");
    const na = new Date(nb.getTime() + 24 * H);
    expect(renewalTime(nb, na, 0.5).getTime()).toBe(nb.getTime() + 16 * H);
    expect(renewalTime(nb, na, 0).getTime()).toBeCloseTo(nb.getTime() + 24 * H * (2 / 3 - 1 / 20), -1);
    expect(renewalTime(nb, na, 0.999999).getTime()).toBeLessThanOrEqual(nb.getTime() + 24 * H * (2 / 3 + 1 / 20));
    const spread = new Set([0.1, 0.3, 0.7, 0.9].map((r) => renewalTime(nb, na, r).getTime()));
    expect(spread.size).toBe(4);
  });

  it("counts a fresh cert's lifetime from when it was obtained, not the CA's 1-minute backdate", () => {
    const got = new Date("2026-01-01T00:01:00Z");
    const nb = new Date(got.getTime() - 60_000);
    const na = new Date(got.getTime() + 9_000);
    // From notBefore, 2/3 of 69 s is 46 s: 14 s in the past, a renewal spin.
    expect(renewalTime(nb, na, 0.5).getTime()).toBeLessThan(got.getTime());
    expect(renewalTime(nb, na, 0.5, got).getTime()).toBe(got.getTime() + 6_000);
  });

  it("backs off exponentially with jitter, bounded, growing with consecutive failures", () => {
    const p = { baseMs: 1_000, maxMs: 60_000 };
    for (let n = 1; n <= 12; n++) {
      const ceiling = Math.min(60_000, 1_000 * 2 ** (n - 1));
      expect(backoffDelay(n, 0, p)).toBe(ceiling / 2);
      expect(backoffDelay(n, 0.999999, p)).toBeLessThanOrEqual(ceiling);
      expect(backoffDelay(n, 0.999999, p)).toBeGreaterThan(ceiling * 0.99);
    }
    // Grows: the lower bound of failure n+1 is the upper bound of failure n, until the cap.
    for (let n = 1; n < 6; n++) expect(backoffDelay(n + 1, 0, p)).toBeGreaterThanOrEqual(backoffDelay(n, 0.999999, p));
    // Bounded however many failures.
    expect(backoffDelay(1_000, 0.999999, p)).toBeLessThanOrEqual(60_000);
    // Jittered.
    expect(backoffDelay(4, 0.1, p)).not.toBe(backoffDelay(4, 0.9, p));
    // failures 0 (just reset) behaves as the first failure.
    expect(backoffDelay(0, 0, p)).toBe(500);
  });

  it("refreshes OCSP at half the response's validity", () => {
    const t = new Date("2026-01-01T00:00:00Z");
    expect(ocspRefreshTime(t, new Date(t.getTime() + 4 * H)).getTime()).toBe(t.getTime() + 2 * H);
    expect(ocspRefreshTime(t, undefined).getTime()).toBe(t.getTime() + H);
    // A stale (cached) response past its half-life: not sooner than a minute from now, no spin.
    const late = new Date(t.getTime() + 3 * H);
    expect(ocspRefreshTime(t, new Date(t.getTime() + 4 * H), late).getTime()).toBe(late.getTime() + 60_000);
  });
});

describe("trust pinning and CSR", () => {
  const rootPem = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "/dev/null", "-subj", "/CN=r", "-days", "1"]);
  const der = allPem(rootPem, "CERTIFICATE")[0]!;
  const fp = sha256Hex(der);

  it("accepts fingerprints in hex, upper case, with colons; refuses anything else", () => {
    expect(parseFingerprint(fp.toUpperCase().match(/../g)!.join(":"))).toBe(fp);
    expect(() => parseFingerprint("abc")).toThrow(/64 hex digits/);
    expect(() => parseFingerprint(`${fp}00`)).toThrow(/64 hex digits/);
  });

  it("accepts a bundle only when a root matches the pin", () => {
    expect(acceptRoots(rootPem, fp).ders).toHaveLength(1);
    expect(() => acceptRoots(rootPem, "0".repeat(64))).toThrow(/^root fingerprint mismatch/);
    expect(() => acceptRoots("nothing", fp)).toThrow(/no certificates/);
  });

  it("makes a P-256 key and a PKCS#10 request the CA's own verifier accepts, with exactly the SANs", () => {
    const { keyPem, csrPem } = makeKeyAndCsr(["a.internal", "10.1.2.3", "::1", "spiffe://example.org/a"]);
    const v = verifyCsr(decodeCsrPem(csrPem));
    expect(v.requested).toEqual({ dns: ["a.internal"], ip: ["10.1.2.3", "::1"], uri: ["spiffe://example.org/a"] });
    expect(v.subjectKey.kind).toBe("ec");
    expect(Buffer.from(v.spki).equals(createPublicKey(keyPem).export({ type: "spki", format: "der" }))).toBe(true);
  });
});

describe("publisher: a set swapped atomically", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "agent-pub-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a concurrent reader never sees a mismatched pair or a missing file across many publications", async () => {
    const pairs = [0, 1, 2, 3].map((i) => {
      const keyPath = join(dir, `k${i}.pem`);
      const cert = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyPath, "-subj", `/CN=p${i}`, "-days", "1"]);
      return { key: readFileSync(keyPath, "utf8"), cert };
    });
    const out = join(dir, "out");
    const publish = (i: number) =>
      publishSet(
        out,
        [
          { name: "key.pem", data: pairs[i % 4]!.key, mode: 0o600 },
          { name: "cert.pem", data: pairs[i % 4]!.cert, mode: 0o644 },
          { name: "chain.pem", data: pairs[i % 4]!.cert, mode: 0o644 },
        ],
        new Date(),
      );
    publish(0);
    const reader = startReader(out, dir);
    await delay(300); // let the reader start sampling
    const N = 400;
    for (let i = 1; i <= N; i++) {
      publish(i);
      if (i % 4 === 0) await delay(1);
    }
    await delay(200);
    const r = await reader.stop();
    expect(r.missing, JSON.stringify(r)).toBe(0);
    expect(r.mismatched, JSON.stringify(r)).toBe(0);
    expect(r.consistent).toBeGreaterThan(50);
    expect(r.versions).toBeGreaterThan(5);
    // The visible names are relative symlinks; the key file is 0600; at most two versions remain.
    expect(statSync(join(out, "key.pem")).mode & 0o777).toBe(0o600);
    expect(readdirSync(out).filter((n) => /^\.\.\d/.test(n)).length).toBeLessThanOrEqual(2);
    const cur = readCurrentSet(out, ["key.pem", "cert.pem"])!;
    expect(new X509Certificate(cur["cert.pem"]!).publicKey.export({ type: "spki", format: "der" })).toEqual(
      createPublicKey(cur["key.pem"]!).export({ type: "spki", format: "der" }),
    );
  }, 60_000);
});

describe("the renewal loop, in process, with an injected clock and sleep (real daemon)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  beforeAll(async () => {
    ws = await agentWorkspace();
    d = await ws.start();
  }, 60_000);
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("backs off while failing, resets on success, renews over mTLS with a new key, falls back to the token once expired", async () => {
    const clock = new ManualClock();
    const events: { event: string; fields: Record<string, unknown> }[] = [];
    const log: LogFn = (event, fields = {}) => events.push({ event, fields });
    const sleeps: number[] = [];
    const tokenFile = join(ws.dir, "loop.token");
    const out = join(ws.dir, "loop-out");
    const stop = new AbortController();
    const serials: string[] = [];
    const keys: string[] = [];
    const agent = new Agent({
      // This test drives every wake-up of the loop; renewal info has its own test (renewal-info polling).
      renewalInfo: false,
      caUrl: d.apiUrl,
      fingerprint: await rootFingerprint(d.publicUrl),
      tokenFile,
      outDir: out,
      sans: ["loop.internal"],
      clock,
      random: () => 0.5,
      log,
      backoff: { baseMs: 1_000, maxMs: 8_000 },
      sleep: async (ms) => {
        sleeps.push(ms);
        const n = sleeps.length;
        if (n === 3) writeFileSync(tokenFile, `${await ws.token("loop", ["loop.internal"])}\n`); // the kubelet delivers a token
        const cur = readCurrentSet(out, ["cert.pem", "key.pem"]);
        if (cur?.["cert.pem"]) {
          const s = new X509Certificate(cur["cert.pem"]).serialNumber;
          if (serials.at(-1) !== s) {
            serials.push(s);
            keys.push(cur["key.pem"]!.toString());
          }
        }
        clock.advance(ms);
        if (n === 4) clock.advance(17 * H); // past 2/3 of the 24 h lifetime: time to renew
        if (n === 6) clock.advance(48 * H); // the host slept past expiry: only the (used) token can help now
        if (n >= 8) stop.abort();
      },
    });
    await agent.run(stop.signal);

    const failures = events.filter((e) => e.event === "attempt failed").map((e) => e.fields.failures);
    // 1-2: no token file yet (backing off 500 ms, then 1 s for failure 2 with random 0.5 → 750..1000).
    expect(sleeps[0]).toBe(750);
    expect(sleeps[1]).toBe(1_500);
    expect(sleeps[2]).toBe(3_000);
    expect(failures.slice(0, 3)).toEqual([1, 2, 3]);
    // 4: issued with the token, then sleeps until the OCSP refresh (half its 4 h validity), which
    // comes before the renewal at 2/3 of 24 h; past that, it renews over mTLS.
    const kinds = events.map((e) => e.event).filter((e) => ["issued", "renewed", "attempt failed"].includes(e));
    expect(kinds.slice(3, 5)).toEqual(["issued", "renewed"]);
    expect(sleeps[3]).toBeGreaterThan(H);
    expect(sleeps[3]).toBeLessThanOrEqual(2 * H);
    expect(serials.length).toBeGreaterThanOrEqual(2);
    expect(serials[0]).not.toBe(serials[1]);
    expect(keys[0]).not.toBe(keys[1]);
    // After the jump past expiry the agent uses the token (now replayed): a token refusal, not a
    // failure to back off from; it then waits for new content in the token file.
    const after = events.slice(events.findIndex((e) => e.event === "renewed"));
    expect(after.some((e) => e.event === "attempt failed")).toBe(false);
    const fail = after.find((e) => e.event === "token refused")!;
    expect(fail.fields.code).toBe("token_spent");
    expect(String(fail.fields.error)).toMatch(/\/v1\/sign.*401.*replayed/);
    expect(events.some((e) => e.event === "ocsp fetched")).toBe(true);
  }, 60_000);
});

describe("layering (DESIGN: agent/ never imports server code)", () => {
  it("src/agent/* and src/cli/cert-agent.ts import only agent/, core/ and x509/ from the project", async () => {
    const { readdirSync: ls, readFileSync: read } = await import("node:fs");
    const { REPO } = await import("./harness/paths.js");
    const files = [
      ...ls(join(REPO, "src", "agent")).map((f) => join(REPO, "src", "agent", f)),
      join(REPO, "src", "cli", "cert-agent.ts"),
    ];
    for (const f of files) {
      for (const m of read(f, "utf8").matchAll(/from "(\.[^"]+)"/g)) {
        const spec = m[1]!;
        const ok = f.endsWith("cert-agent.ts") ? /^\.\.\/(agent|core|x509)\//.test(spec) : /^\.\/|^\.\.\/(core|x509)\//.test(spec);
        expect(ok, `${f} imports ${spec}`).toBe(true);
      }
    }
  });
});
