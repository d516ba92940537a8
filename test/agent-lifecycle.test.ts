/**
 * cert-agent's life without a human (issue 13): the CA down for longer than a renewal window or
 * than a whole lifetime, a spent token, a revoked certificate, SIGHUP, --help/--version, and
 * bounded response bodies. In-process agents run on a ManualClock with a fake sleep that records
 * what the loop asks for (no real waiting); the CA is the real daemon, restarted on its dataDir.
 */
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/core/clock.js";
import { Agent, TOKEN_POLL_MS, type LogFn, type LogLevel } from "../src/agent/agent.js";
import { httpsRequest, refusalCode } from "../src/agent/ca-client.js";
import { AgentError } from "../src/agent/errors.js";
import { checkOcspResponse, fetchOcsp } from "../src/agent/ocsp-fetch.js";
import { readCurrentSet } from "../src/agent/publisher.js";
import { allPem } from "../src/x509/pem.js";
import Database from "better-sqlite3";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";
import { AGENT_BIN, agentWorkspace, freePort, rootFingerprint, runAgent } from "./harness/cert-agent.js";
import { mtlsRequest } from "./harness/http.js";

const H = 3_600_000;

interface Event {
  event: string;
  level: LogLevel;
  fields: Record<string, unknown>;
}

/** The published set's serial, ..data target, cert and OCSP status (null when none is published). */
function published(out: string): { serial: string; version: string; cert: string; ocsp: string | null } | null {
  const s = readCurrentSet(out, ["cert.pem", "chain.pem", "ocsp.der"]);
  if (!s?.["cert.pem"] || !s["chain.pem"]) return null;
  const cert = s["cert.pem"].toString("utf8");
  let ocsp: string | null = null;
  if (s["ocsp.der"]) {
    const leaf = allPem(cert, "CERTIFICATE")[0]!;
    const issuer = allPem(s["chain.pem"].toString("utf8"), "CERTIFICATE")[0]!;
    ocsp = checkOcspResponse(s["ocsp.der"], leaf, issuer).status;
  }
  return { serial: new X509Certificate(cert).serialNumber.toLowerCase(), version: readlinkSync(join(out, "..data")), cert, ocsp };
}

describe("cert-agent life cycle against a real daemon (issue 13)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let fp: string;

  beforeAll(async () => {
    // The in-process agents' ManualClock runs up to 25 h ahead of the daemon's real one, and the
    // agent checks a staple's thisUpdate..nextUpdate against its own clock: answers that live
    // 72 h stay current for it.
    ws = await agentWorkspace("ocsp: { validity: 72h }\n");
    // A fixed API port, so the agent's --ca still names the CA after a restart on the same dataDir.
    const cfg = readFileSync(ws.configPath, "utf8").replace('api: "127.0.0.1:0"', `api: "127.0.0.1:${await freePort()}"`);
    writeFileSync(ws.configPath, cfg);
    d = await ws.start();
    fp = await rootFingerprint(d.publicUrl);
  }, 60_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  async function writeToken(path: string, name: string): Promise<void> {
    writeFileSync(path, `${await ws.token(name, [`${name}.internal`])}\n`);
  }

  /**
   * An in-process agent whose sleep records the delay, advances the clock by it and then runs
   * `step(n, ms)` (n counts sleeps from 1); the loop stops when step returns "stop".
   */
  function loopAgent(
    name: string,
    step: (n: number, ms: number, clock: ManualClock, signal: AbortSignal | undefined) => Promise<"stop" | void>,
    random: () => number = () => 0.5,
    renewalInfo = false,
  ) {
    const clock = new ManualClock();
    const events: Event[] = [];
    const sleeps: number[] = [];
    const log: LogFn = (event, fields = {}, level = "info") => events.push({ event, fields, level });
    const stop = new AbortController();
    const out = join(ws.dir, `${name}-out`);
    const tokenFile = join(ws.dir, `${name}.token`);
    const agent = new Agent({
      // The tests drive every wake-up of the loop; renewal info has its own test below.
      renewalInfo,
      caUrl: d.apiUrl,
      fingerprint: fp,
      tokenFile,
      outDir: out,
      sans: [`${name}.internal`],
      clock,
      random,
      log,
      backoff: { baseMs: 1_000, maxMs: 16_000 },
      sleep: async (ms, signal) => {
        sleeps.push(ms);
        events.push({ event: "(slept)", level: "info", fields: { ms } });
        clock.advance(ms);
        if ((await step(sleeps.length, ms, clock, signal)) === "stop" || sleeps.length > 60) stop.abort();
      },
    });
    return { agent, clock, events, sleeps, out, tokenFile, run: () => agent.run(stop.signal) };
  }

  async function restartCa(): Promise<void> {
    d = await ws.start();
  }

  it("CA down past the renewal time: capped, growing, jittered backoff; the set untouched; renews within one step of the CA's return", async () => {
    // Alternating randomness: the jitter must show in the delays.
    const rs = [0.1, 0.9, 0.3, 0.7];
    let ri = 0;
    let before: ReturnType<typeof published> = null;
    let downFrom = 0;
    const untouched: boolean[] = [];
    const a = loopAgent(
      "down",
      async (n, ms) => {
        if (n === 1) {
          // The staple lives 72 h, so the first sleep was the one to the renewal time (2/3 ± 1/20
          // of the 24 h lifetime, well before expiry): the CA goes away just then.
          expect(ms).toBeGreaterThan(15 * H);
          before = published(a.out);
          await d.stop();
          downFrom = a.events.length;
          return;
        }
        const now = published(a.out);
        untouched.push(now?.version === before?.version && now?.cert === before?.cert);
        if (n === 9) await restartCa(); // after 8 failed attempts
        if (a.events.some((e) => e.event === "renewed")) return "stop";
      },
      () => rs[ri++ % rs.length]!,
    );
    await writeToken(a.tokenFile, "down");
    await a.run();

    expect(before).not.toBeNull();
    const failed = a.events.slice(downFrom).filter((e) => e.event === "attempt failed");
    expect(failed.map((e) => e.fields.code)).toEqual(Array(8).fill("unreachable"));
    expect(failed.every((e) => e.level === "warn")).toBe(true);
    // The 8 backoff sleeps: each inside [ceiling/2, ceiling] for ceiling = min(16 s, 1 s × 2^(n-1)).
    const backoffs = a.sleeps.slice(1, 9);
    backoffs.forEach((ms, i) => {
      const ceiling = Math.min(16_000, 1_000 * 2 ** i);
      expect(ms, `failure ${i + 1}`).toBeGreaterThanOrEqual(ceiling / 2);
      expect(ms, `failure ${i + 1}`).toBeLessThanOrEqual(ceiling);
    });
    expect(Math.max(...backoffs)).toBeLessThanOrEqual(16_000); // capped
    expect(backoffs.slice(4).some((ms) => ms !== backoffs[4])).toBe(true); // jittered at the cap
    expect(backoffs[3]!).toBeGreaterThan(backoffs[0]!); // growing
    // The published set stayed exactly as it was while the CA was away.
    expect(untouched.slice(0, 8).every(Boolean)).toBe(true);
    // The CA came back during sleep 9: the very next attempt renewed (no further failure).
    const ninth = a.events.map((e, i) => (e.event === "(slept)" ? i : -1)).filter((i) => i >= 0)[8]!;
    expect(a.events.slice(ninth).find((e) => e.event === "renewed" || e.event === "attempt failed")?.event).toBe("renewed");
    const after = published(a.out)!;
    expect(after.serial).not.toBe(before!.serial);
    expect(after.ocsp).toBe("good");
  }, 30_000);

  it("CA down past expiry: an error naming the expiry, the spent token refused once, then a fresh token in the file enrolls without a restart", async () => {
    let first: ReturnType<typeof published> = null;
    let notAfter = "";
    let sleepsAtRefusal = -1;
    const a = loopAgent("expired", async (n, _ms, clock) => {
      if (n === 1) {
        first = published(a.out);
        notAfter = new X509Certificate(first!.cert).validTo;
        await d.stop();
        clock.advance(9 * H); // with the first sleep (~16 h), the whole 24 h lifetime passed with the CA down
        return;
      }
      if (n === 3) await restartCa();
      const refused = a.events.findIndex((e) => e.event === "token refused");
      if (refused >= 0 && sleepsAtRefusal < 0) sleepsAtRefusal = n;
      // Three polls of an unchanged file, then the operator (or the platform) writes a new token.
      if (sleepsAtRefusal > 0 && n === sleepsAtRefusal + 3) await writeToken(a.tokenFile, "expired");
      if (a.events.filter((e) => e.event === "issued").length >= 2) return "stop";
    });
    await writeToken(a.tokenFile, "expired");
    await a.run();

    const expired = a.events.find((e) => e.event === "certificate expired")!;
    expect(expired.level).toBe("error");
    expect(new Date(String(expired.fields.expired_at)).getTime()).toBe(new Date(notAfter).getTime());
    const refused = a.events.filter((e) => e.event === "token refused");
    expect(refused).toHaveLength(1);
    expect(refused[0]!.level).toBe("error");
    expect(refused[0]!.fields.code).toBe("token_spent");
    expect(String(refused[0]!.fields.action)).toContain(a.tokenFile);
    // While waiting: polls of TOKEN_POLL_MS, no request to the CA (no "enrolling"), one "sleeping" line.
    const i0 = a.events.indexOf(refused[0]!);
    const i1 = a.events.findIndex((e) => e.event === "token file changed");
    expect(i1).toBeGreaterThan(i0);
    const waiting = a.events.slice(i0, i1);
    expect(waiting.filter((e) => e.event === "(slept)").map((e) => e.fields.ms)).toEqual(Array(4).fill(TOKEN_POLL_MS));
    expect(waiting.some((e) => e.event === "enrolling")).toBe(false);
    expect(waiting.filter((e) => e.event === "sleeping").map((e) => e.fields.waiting_for)).toEqual(["new token"]);
    // And then a new set.
    const now = published(a.out)!;
    expect(now.serial).not.toBe(first!.serial);
    expect(now.ocsp).toBe("good");
    // The token is never logged.
    expect(JSON.stringify(a.events)).not.toContain(readFileSync(a.tokenFile, "utf8").trim());
  }, 30_000);

  it("revoked: OCSP saying revoked is never published and the agent re-attests at once; a 401 revoked renewal does the same", async () => {
    const serials: string[] = [];
    const ocspSeen: (string | null)[] = [];
    const a = loopAgent("revoked", async (n) => {
      const p = published(a.out);
      if (p) {
        if (serials.at(-1) !== p.serial) serials.push(p.serial);
        ocspSeen.push(p.ocsp);
      }
      if (n === 1 || n === 2) {
        // Revoke the current cert as its holder (SPEC POST /v1/revoke over mTLS), put a fresh token in place.
        const s = readCurrentSet(a.out, ["key.pem", "fullchain.pem", "ca.pem"])!;
        const r = await mtlsRequest(`${d.apiUrl}/v1/revoke`, s["ca.pem"]!.toString(), {
          identity: { key: s["key.pem"]!, cert: s["fullchain.pem"]! },
          body: JSON.stringify({ serial: p!.serial, reason: "keyCompromise" }),
        });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        await writeToken(a.tokenFile, "revoked");
        if (n === 1) {
          // First round: an OCSP refresh must see it (SPEC: within 5 s) and refuse to publish it.
          const leaf = allPem(p!.cert, "CERTIFICATE")[0]!;
          const issuer = allPem(s["fullchain.pem"]!.toString(), "CERTIFICATE")[1]!;
          const t0 = Date.now();
          while ((await fetchOcsp(leaf, issuer)).status !== "revoked") {
            expect(Date.now() - t0).toBeLessThan(6_000);
            await new Promise((r) => setTimeout(r, 100));
          }
          // The loop's own refresh comes at half the staple's 72 h, after the renewal: ask for it now.
          const e = await a.agent.refreshOcsp(a.agent.readCurrent()!).catch((x: unknown) => x);
          expect((e as AgentError).code).toBe("cert_refused");
          expect(published(a.out)!.serial).toBe(p!.serial);
          a.agent.reattest(String((e as Error).message));
        }
        // Second round: this sleep took the clock to the renewal time, which meets 401 revoked.
        return;
      }
      return "stop";
    });
    await writeToken(a.tokenFile, "revoked");
    await a.run();

    // Never a revoked ocsp.der in the published set.
    expect(ocspSeen).not.toContain("revoked");
    expect(serials).toHaveLength(3);
    expect(new Set(serials).size).toBe(3);
    expect(ocspSeen.at(-1)).toBe("good");
    const kinds = a.events.map((e) => (e.event === "ocsp fetched" ? `ocsp ${String(e.fields.status)}` : e.event));
    // Round 1: OCSP said revoked → re-attest → issued with the token, with no sleep or backoff between.
    const r1 = kinds.indexOf("ocsp revoked");
    expect(r1).toBeGreaterThan(0);
    const seg1 = kinds.slice(r1, kinds.indexOf("issued", r1) + 1);
    expect(seg1).toContain("re-attesting");
    expect(seg1).toContain("enrolling");
    expect(seg1.some((k) => k === "(slept)" || k === "attempt failed" || k === "published")).toBe(false);
    // Round 2: 401 revoked on /v1/renew → re-attest → issued, again with no sleep between.
    const r2 = a.events.findIndex((e) => e.event === "re-attesting" && /\/v1\/renew.*401.*revoked/.test(String(e.fields.reason)));
    expect(r2).toBeGreaterThan(r1);
    const seg2 = kinds.slice(r2, kinds.indexOf("issued", r2) + 1);
    expect(seg2).toContain("enrolling");
    expect(seg2).not.toContain("(slept)");
    expect(a.events.some((e) => e.event === "attempt failed")).toBe(false);
  }, 30_000);

  it("renewal info: a window pulled forward by `fleetca renew-window --issuer` moves each agent's renewal into it, spread; a revocation it reports makes the agent re-attest", async () => {
    const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    const issuerKeyId = db.prepare("SELECT key_id FROM issuers WHERE role = 'intermediate' AND status = 'active'").pluck().get() as string;
    db.close();
    const randoms = [0.1, 0.5, 0.9];
    const agents: ReturnType<typeof loopAgent>[] = randoms.map((r, i) =>
      loopAgent(`ari-${i}`, async () => (agents[i]!.events.some((e) => e.event === "renewed") ? "stop" : undefined), () => r, true),
    );
    // Three hosts enrolled with 24 h certificates; then the operator pulls every live certificate
    // of the issuer forward, to end within the hour.
    for (const [i, a] of agents.entries()) {
      await writeToken(a.tokenFile, `ari-${i}`);
      await a.agent.issueAndPublish(null);
    }
    const pulledAt = Date.now();
    const cmd = await ws.cli(["renew-window", "--issuer", issuerKeyId, "--by", "1h"]);
    expect(cmd.code, cmd.stderr).toBe(0);
    // Each agent, started on its existing set, asks for renewal info at once and follows it.
    await Promise.all(agents.map((a) => a.run()));
    const renewAts = agents.map((a, i) => {
      const moved = a.events.find((e) => e.event === "renewal window moved by the CA");
      expect(moved, `agent ${i}`).toBeDefined();
      const at = new Date(String(moved!.fields.renew_at)).getTime();
      expect(at, `agent ${i}`).toBeGreaterThanOrEqual(pulledAt - 1_000);
      expect(at, `agent ${i}`).toBeLessThanOrEqual(pulledAt + 3_600_000);
      // It slept until that moment, well before its own 2/3-of-24 h time, then renewed over mTLS.
      const renewSleep = a.events.find((e) => e.event === "sleeping" && e.fields.waiting_for === "renewal")!;
      expect(Number(renewSleep.fields.ms), `agent ${i}`).toBeLessThanOrEqual(3_600_000);
      expect(a.events.some((e) => e.event === "renewed"), `agent ${i}`).toBe(true);
      // The renewed certificate is a new one, asked about after one polling interval.
      const after = a.events.slice(a.events.findIndex((e) => e.event === "renewed"));
      expect(after.find((e) => e.event === "sleeping")?.fields.ms, `agent ${i}`).toBe(5 * 60_000);
      return at;
    });
    // Spread: one window, three draws, three moments, in the order of the draws.
    expect(new Set(renewAts).size).toBe(3);
    expect(renewAts[0]!).toBeLessThan(renewAts[1]!);
    expect(renewAts[1]!).toBeLessThan(renewAts[2]!);

    // Revoked: renewal info says so at the next poll, and the agent re-attests with its token at once.
    const v = loopAgent(
      "ari-revoked",
      async (n) => {
        if (n === 1) {
          const s = readCurrentSet(v.out, ["key.pem", "fullchain.pem", "ca.pem", "cert.pem"])!;
          const serial = new X509Certificate(s["cert.pem"]!).serialNumber.toLowerCase();
          const r = await mtlsRequest(`${d.apiUrl}/v1/revoke`, s["ca.pem"]!.toString(), {
            identity: { key: s["key.pem"]!, cert: s["fullchain.pem"]! },
            body: JSON.stringify({ serial, reason: "keyCompromise" }),
          });
          expect(r.status).toBe(200);
          await writeToken(v.tokenFile, "ari-revoked");
          return;
        }
        return v.events.filter((e) => e.event === "issued").length >= 2 ? "stop" : undefined;
      },
      () => 0.5,
      true,
    );
    await writeToken(v.tokenFile, "ari-revoked");
    await v.run();
    const said = v.events.findIndex((e) => e.event === "renewal info says the certificate is revoked");
    expect(said).toBeGreaterThan(0);
    const after = v.events.slice(said).map((e) => e.event);
    expect(after.slice(0, after.indexOf("issued") + 1)).toContain("re-attesting");
    expect(after.slice(0, after.indexOf("issued") + 1)).not.toContain("(slept)");
    // Within one polling interval: the first sleep after the revocation was the 5-minute poll.
    expect(v.sleeps[0]).toBe(5 * 60_000);
  }, 60_000);

  it("a spent token: --once exits non-zero with one line saying what to do; the loop asks the CA once, then waits for the file", async () => {
    const tokenFile = join(ws.dir, "spent.token");
    await writeToken(tokenFile, "spent");
    const base = ["--ca", d.apiUrl, "--root-fingerprint", fp, "--token-file", tokenFile, "--san", "spent.internal", "--once"];
    expect((await runAgent([...base, "--out", join(ws.dir, "spent-1")])).code).toBe(0);
    const r = await runAgent([...base, "--out", join(ws.dir, "spent-2")]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^cert-agent: enrollment \(\/v1\/sign\) refused by the CA \(HTTP 401\): unauthorized: replayed; the token in --token-file was already used: put a new token there\n$/);
    expect(r.stdout).toMatch(/^level=info /m);

    const replays = () => (d.output.match(/replayed/g) ?? []).length;
    const before = replays();
    const a = loopAgent("spent", async (n) => (n >= 20 ? "stop" : undefined));
    writeFileSync(a.tokenFile, readFileSync(tokenFile));
    await a.run();
    expect(a.events.filter((e) => e.event === "enrolling")).toHaveLength(1);
    expect(a.events.filter((e) => e.event === "token refused")).toHaveLength(1);
    expect(a.sleeps).toEqual(Array(20).fill(TOKEN_POLL_MS));
    // The daemon saw one replayed token, not twenty (its log arrives through a pipe: wait for it).
    for (let t = 0; t < 30 && replays() === before; t++) await new Promise((res) => setTimeout(res, 100));
    await new Promise((res) => setTimeout(res, 200));
    expect(replays() - before).toBe(1);
  }, 30_000);

  it("renewNow() and reattest() wake the loop's sleep: a renewal over mTLS, then an enrollment with the token", async () => {
    const woken: boolean[] = [];
    let serialAtReattest = "";
    const a = loopAgent("wake", async (n, _ms, _clock, signal) => {
      if (n === 1) {
        a.agent.renewNow("test");
        woken.push(signal?.aborted === true);
      } else if (n === 2) {
        serialAtReattest = published(a.out)!.serial;
        await writeToken(a.tokenFile, "wake");
        a.agent.reattest("renewal-info says revoked");
        woken.push(signal?.aborted === true);
      } else return "stop";
    });
    await writeToken(a.tokenFile, "wake");
    await a.run();
    expect(woken).toEqual([true, true]);
    const kinds = a.events.map((e) => e.event).filter((e) => ["issued", "renewed", "(slept)", "renewing on request", "re-attesting"].includes(e));
    expect(kinds).toEqual(["issued", "(slept)", "renewing on request", "renewed", "(slept)", "re-attesting", "issued", "(slept)"]);
    expect(published(a.out)!.serial).not.toBe(serialAtReattest);
  }, 30_000);

  it("a wrong root pin ends the loop with code fingerprint_mismatch (no retry can fix a pin)", async () => {
    const a = loopAgent("pin", async () => "stop");
    const wrong = new Agent({
      caUrl: d.apiUrl,
      fingerprint: "ab".repeat(32),
      tokenFile: a.tokenFile,
      outDir: a.out,
      sans: ["pin.internal"],
      clock: a.clock,
      random: () => 0.5,
      log: () => {},
      sleep: async () => {},
    });
    const e = await wrong.run(new AbortController().signal).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AgentError);
    expect((e as AgentError).code).toBe("fingerprint_mismatch");
  });

  it("SIGHUP makes a running cert-agent renew at once; --metrics-listen counts it", async () => {
    const tokenFile = join(ws.dir, "hup.token");
    await writeToken(tokenFile, "hup");
    const out = join(ws.dir, "hup-out");
    const child = spawn(process.execPath, [AGENT_BIN, "--ca", d.apiUrl, "--root-fingerprint", fp, "--token-file", tokenFile, "--out", out, "--san", "hup.internal", "--metrics-listen", "127.0.0.1:0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stdout += b.toString()));
    const waitFor = async (re: RegExp, count: number) => {
      const t0 = Date.now();
      while ((stdout.match(re) ?? []).length < count) {
        if (Date.now() - t0 > 10_000) throw new Error(`timed out waiting for ${re}:\n${stdout}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await waitFor(/msg="sleeping"/g, 1);
      const first = published(out)!;
      expect(stdout).toMatch(/^level=info ts=\S+ msg="sleeping" waiting_for=(?:"ocsp refresh"|renewal|"renewal info") /m);
      child.kill("SIGHUP");
      await waitFor(/msg="renewed"/g, 1);
      await waitFor(/msg="sleeping"/g, 2);
      const second = published(out)!;
      expect(second.serial).not.toBe(first.serial);
      expect(stdout).toMatch(/msg="renewal requested" signal=SIGHUP/);
      // The agent's Prometheus figures follow what it did: one enrollment, one renewal, the live cert.
      const url = /msg="metrics listening" url=(\S+)/.exec(stdout)?.[1];
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const text = await (await fetch(url!)).text();
      expect(text).toMatch(/^certagent_renewals_total\{result="ok",via="sign"\} 1$/m);
      expect(text).toMatch(/^certagent_renewals_total\{result="ok",via="renew"\} 1$/m);
      expect(text).toContain(`certagent_cert_info{serial="${second.serial}"} 1`);
      const left = Number(/^certagent_cert_expiry_seconds (\S+)$/m.exec(text)?.[1]);
      expect(left).toBeGreaterThan(0);
      expect(left).toBeLessThanOrEqual((new Date(new X509Certificate(second.cert).validTo).getTime() - Date.now()) / 1000 + 5);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
    }
    expect(child.exitCode).toBe(0);
  }, 30_000);
});

describe("a standing re-attest while the CA is unreachable", () => {
  it("backs off like any failure (a pending request skips one sleep, not all of them)", async () => {
    const clock = new ManualClock();
    const sleeps: number[] = [];
    const stop = new AbortController();
    let attempts = 0;
    const agent = new Agent({
      // This test drives every wake-up of the loop; renewal info has its own test (renewal-info polling).
      renewalInfo: false,
      caUrl: "https://127.0.0.1:1", // nothing listens on port 1: connection refused at once
      fingerprint: "0".repeat(64),
      tokenFile: "/nonexistent/token",
      outDir: "/nonexistent/out",
      sans: ["x.internal"],
      clock,
      random: () => 0.5,
      backoff: { baseMs: 1_000, maxMs: 8_000 },
      log: (event) => {
        if (event === "attempt failed" && ++attempts >= 6) stop.abort();
      },
      sleep: async (ms) => {
        sleeps.push(ms);
        clock.advance(ms);
      },
    });
    agent.reattest("renewal-info says revoked");
    await agent.run(stop.signal);
    expect(attempts).toBe(6);
    // Five backoff sleeps between the six attempts (the sixth aborts the loop before its sleep returns).
    expect(sleeps.slice(0, 5)).toEqual([750, 1_500, 3_000, 6_000, 6_000]);
  });
});

describe("cert-agent --help and --version", () => {
  it("--help: usage and examples, exit 0; --version: package.json's version; an unknown flag: exit 2, one line", async () => {
    const [help, v, bad] = await Promise.all([runAgent(["--help"]), runAgent(["--version"]), runAgent(["--frobnicate"])]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: cert-agent --ca URL/);
    expect(help.stdout).toMatch(/Examples:\n {2}cert-agent --ca https:\/\//);
    expect(help.stdout).toContain("SIGHUP");
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    expect(v).toEqual({ code: 0, stdout: `cert-agent ${pkg.version}\n`, stderr: "" });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
  });
});

describe("agent CA client: coded refusals and bounded bodies", () => {
  it("classifies by status and the CA's error code, never by our own message text", () => {
    expect(refusalCode("sign", 401, { error: "unauthorized", message: "replayed" })).toBe("token_spent");
    expect(refusalCode("sign", 401, { error: "unauthorized", message: "expired" })).toBe("token_refused");
    expect(refusalCode("sign", 403, { error: "forbidden", message: "dns name not allowed" })).toBe("token_refused");
    expect(refusalCode("renew", 401, { error: "unauthorized", message: "revoked" })).toBe("cert_refused");
    expect(refusalCode("renew", 401, { error: "unauthorized", message: "unknown_certificate: not a certificate issued by this CA" })).toBe("cert_refused");
    expect(refusalCode("renew", 400, { error: "bad_csr", message: "x" })).toBe("bad_request");
    // The provisioner ended the chain of renewals: only the token helps. Another 403 does not.
    for (const reason of ["provisioner_removed", "renewal_not_allowed", "renewal_age_exceeded", "superseded"]) {
      expect(refusalCode("renew", 403, { error: "forbidden", message: `${reason}: attest again` }), reason).toBe("cert_refused");
    }
    expect(refusalCode("renew", 403, { error: "forbidden", message: "a renewal keeps the current SANs" })).toBe("bad_request");
    expect(refusalCode("sign", 503, null)).toBe("ca_error");
    expect(refusalCode("sign", 429, { error: "rate_limited", message: "slow down" })).toBe("ca_error");
    expect(refusalCode("sign", 302, null)).toBe("bad_answer");
  });

  describe("a server streaming more than the cap", () => {
    let srv: Server;
    let url: string;
    beforeAll(async () => {
      srv = createServer((req, res) => {
        const chunk = Buffer.alloc(64 * 1024, 0x41);
        if (req.url === "/declared") res.setHeader("content-length", String(8 * chunk.length));
        let i = 0;
        const more = () => {
          while (i < 8 && !res.destroyed) {
            i++;
            if (!res.write(chunk)) return void res.once("drain", more);
          }
          res.end();
        };
        more();
      });
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
      url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    });
    afterAll(() => new Promise<void>((r) => srv.close(() => r())));

    it("refuses a declared or streamed body above maxBodyBytes with code bad_answer; accepts one below", async () => {
      for (const path of ["/declared", "/chunked"]) {
        const e = await httpsRequest(`${url}${path}`, { method: "GET", maxBodyBytes: 100_000 }).catch((x: unknown) => x);
        expect(e, path).toBeInstanceOf(AgentError);
        expect((e as AgentError).code, path).toBe("bad_answer");
      }
      const ok = await httpsRequest(`${url}/chunked`, { method: "GET", maxBodyBytes: 1 << 20 });
      expect(ok.body.length).toBe(8 * 64 * 1024);
    });
  });
});
