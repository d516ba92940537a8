/**
 * cert-agent killed with SIGKILL in the middle of its first enrollment (issue 13): the token is
 * one-time, so a restart that sent a new request would be refused (`401 replayed`) whenever the
 * CA had already committed the first one, stranding the host and orphaning that certificate.
 * With the enrollment journal the restart resends the same request and gets the stored
 * certificate. 20 kills at spread-out moments; after each, one more `--once` must publish a set,
 * and the inventory must hold exactly the certificate the host published for that name.
 */
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";
import { AGENT_BIN, agentWorkspace, rootFingerprint, runAgent } from "./harness/cert-agent.js";

describe("cert-agent killed during its first enrollment", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let fp: string;

  beforeAll(async () => {
    ws = await agentWorkspace();
    d = await ws.start();
    fp = await rootFingerprint(d.publicUrl);
  }, 60_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  const args = (out: string, tokenPath: string, san: string) => ["--ca", d.apiUrl, "--root-fingerprint", fp, "--token-file", tokenPath, "--out", out, "--san", san, "--once"];

  /** Starts `cert-agent --once` and SIGKILLs it after `ms`; resolves with whether it had already exited. */
  const killAfter = (a: string[], ms: number) =>
    new Promise<boolean>((resolve) => {
      const child = spawn(process.execPath, [AGENT_BIN, ...a], { stdio: "ignore" });
      let exited = false;
      child.on("exit", () => {
        exited = true;
      });
      setTimeout(() => {
        const finished = exited;
        if (!exited) child.kill("SIGKILL");
        if (exited) resolve(finished);
        else child.on("exit", () => resolve(finished));
      }, ms);
    });

  /** Starts `cert-agent --once` and SIGKILLs it the moment the daemon has logged `needle` (the certificate is committed). */
  const killOnLog = (a: string[], needle: string) =>
    new Promise<boolean>((resolve) => {
      const child = spawn(process.execPath, [AGENT_BIN, ...a], { stdio: "ignore" });
      let exited = false;
      child.on("exit", () => {
        exited = true;
      });
      const poll = setInterval(() => {
        if (!d.output.includes(needle) && !exited) return;
        clearInterval(poll);
        const finished = exited;
        if (!exited) child.kill("SIGKILL");
        if (exited) resolve(finished);
        else child.on("exit", () => resolve(finished));
      }, 1);
    });

  it("always ends with a published set and no orphaned certificate, over 20 kills", async () => {
    // How long one whole enrollment takes here: the kills are spread over it.
    const probeOut = join(ws.dir, "probe");
    const probeToken = join(ws.dir, "probe.token");
    writeFileSync(probeToken, `${await ws.token("probe", ["probe.internal"])}\n`);
    const t0 = Date.now();
    expect((await runAgent(args(probeOut, probeToken, "probe.internal"))).code).toBe(0);
    const full = Date.now() - t0; // a first enrollment exits as soon as it has published

    let killedMidway = 0;
    for (let i = 0; i < 20; i++) {
      const san = `crash-${i}.internal`;
      const out = join(ws.dir, `out-${i}`);
      const tokenPath = join(ws.dir, `crash-${i}.token`);
      writeFileSync(tokenPath, `${await ws.token(`crash-${i}`, [san])}\n`);
      // Even rounds: a moment spread over the whole enrollment. Odd rounds: right after the CA
      // committed the certificate, before the agent could publish it — the window in which a
      // restart without the journal is refused as `replayed` and the certificate is orphaned.
      const finishedFirst =
        i % 2 === 0 ? await killAfter(args(out, tokenPath, san), Math.round(((i + 0.5) / 20) * full)) : await killOnLog(args(out, tokenPath, san), san);
      if (!finishedFirst) killedMidway++;
      // Killed after it published (while waiting to retire the replaced set, or with a fast
      // machine): the restart then renews that certificate, which is a published one too.
      const serialOf = () => new X509Certificate(readFileSync(join(out, "cert.pem"))).serialNumber.toLowerCase();
      const publishedBefore = existsSync(join(out, "cert.pem")) ? [serialOf()] : [];
      const r = await runAgent(args(out, tokenPath, san));
      expect(r.code, `round ${i}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(existsSync(join(out, "cert.pem")), `round ${i}`).toBe(true);
      expect(existsSync(join(out, "..enrollment.json")), `round ${i}: the journal is cleared once published`).toBe(false);
      const published = [...publishedBefore, serialOf()];
      const list = await ws.cli(["list", "--all", "--json"]);
      const mine = (JSON.parse(list.stdout) as { serial: string; sans: string[] }[]).filter((c) => c.sans.includes(san));
      expect(mine.map((c) => c.serial.toLowerCase()).sort(), `round ${i}`).toEqual([...new Set(published)].sort());
    }
    expect(killedMidway).toBeGreaterThanOrEqual(15);
  }, 180_000);

  it("renewal: killed after the CA stored the successor, the restart gets that successor (no fork, no refusal)", async () => {
    // The CA marks a renewed certificate superseded (issue 15): a restart that sent a new key
    // would be refused and the host stranded until its certificate expired. The renewal journal
    // makes the restart resend the same key, and the CA answers with the successor it stored.
    const san = "renew-crash.internal";
    const out = join(ws.dir, "renew-crash");
    const tokenPath = join(ws.dir, "renew-crash.token");
    writeFileSync(tokenPath, `${await ws.token("renew-crash", [san])}\n`);
    expect((await runAgent(args(out, tokenPath, san))).code).toBe(0);
    const serialOf = () => new X509Certificate(readFileSync(join(out, "cert.pem"))).serialNumber.toLowerCase();
    for (let i = 0; i < 2; i++) {
      const before = serialOf();
      const finishedFirst = await killOnLog(args(out, tokenPath, san), `renewedFrom=${before}`);
      expect(finishedFirst, `round ${i}: killed before it could publish`).toBe(false);
      expect(serialOf(), `round ${i}: the killed agent published nothing`).toBe(before);
      const r = await runAgent(args(out, tokenPath, san));
      expect(r.code, `round ${i}: ${r.stdout}${r.stderr}`).toBe(0);
      const after = serialOf();
      expect(existsSync(join(out, "..renewal.json")), `round ${i}: the journal is cleared once published`).toBe(false);
      // The successor the killed attempt stored is the one published: the old certificate has
      // exactly one successor.
      const list = JSON.parse((await ws.cli(["list", "--all", "--json"])).stdout) as { serial: string; sans: string[] }[];
      const mine = list.filter((c) => c.sans.includes(san)).map((c) => c.serial.toLowerCase());
      expect(mine, `round ${i}`).toContain(after);
      expect(mine.filter((s) => s !== before && !published.has(s)), `round ${i}: one successor`).toEqual([after]);
      published.add(before);
      published.add(after);
    }
  }, 120_000);
  const published = new Set<string>();
});
