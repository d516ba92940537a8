import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { X509Certificate, createPublicKey } from "node:crypto";
import { join } from "node:path";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";
import { eventually } from "./harness/eventually.js";
import { AGENT_BIN, agentWorkspace, rootFingerprint, startReader } from "./harness/cert-agent.js";

/**
 * The real cert-agent, long-running, against a real daemon issuing 30-second certs: it must renew
 * at ~2/3 of the lifetime (~20 s) over mTLS with a fresh key, run the reload command after each
 * publication, and never let a reader see a key that does not match the cert beside it.
 */
// The daemon's own API serving cert also gets defaultTTL and is renewed on its 60 s tick, so the
// test stops after one renewal, well before that serving cert lapses (30 s after start).
describe("cert-agent renewal loop (real processes, 30 s certificates)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let agent: ChildProcess | undefined;
  let agentOut = "";

  beforeAll(async () => {
    ws = await agentWorkspace("issuance: { defaultTTL: 30s, maxTTL: 168h, minTTL: 5s }\n");
    d = await ws.start();
  }, 60_000);

  afterAll(async () => {
    if (agent && agent.exitCode === null) agent.kill("SIGKILL");
    await d?.stop();
    ws?.remove();
  });

  it("renews over mTLS with a new key and serial, reloads after each change, readers always see a matching pair", async () => {
    const out = join(ws.dir, "out");
    const reloadLog = join(ws.dir, "reloads.log");
    const tokenFile = join(ws.dir, "svc.token");
    writeFileSync(tokenFile, `${await ws.token("svc", ["svc.internal"])}\n`);
    agent = spawn(
      process.execPath,
      [AGENT_BIN, "--ca", d.apiUrl, "--root-fingerprint", await rootFingerprint(d.publicUrl), "--token-file", tokenFile, "--out", out, "--san", "svc.internal", "--reload-cmd", `echo reload >> ${reloadLog}`],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    agent.stdout!.on("data", (b: Buffer) => (agentOut += b.toString()));
    agent.stderr!.on("data", (b: Buffer) => (agentOut += b.toString()));

    await eventually(15_000, "first issuance", async () => existsSync(join(out, "..data")), (x) => x);
    const reader = startReader(out, ws.dir);
    const serials = new Set<string>();
    const keys = new Set<string>();
    const sample = async () => {
      try {
        const v = readFileSync(join(out, "..data", "cert.pem"), "utf8");
        serials.add(new X509Certificate(v).serialNumber);
        keys.add(createPublicKey(readFileSync(join(out, "..data", "key.pem"))).export({ type: "spki", format: "der" }).toString("hex"));
      } catch {
        /* the version directory moved under us; next sample */
      }
      return serials.size;
    };
    await eventually(26_000, "a renewal", sample, (n) => n >= 2).catch((e: Error) => {
      throw new Error(`${e.message}\nagent output:\n${agentOut}`);
    });
    // The reader is another process, on 2 shared cores: let it read the renewed set too.
    await eventually(10_000, "the reader read the renewed set", async () => reader.versionsSeen(), (n) => n >= 2);
    const report = await reader.stop();

    expect(agentOut.match(/msg="renewed"/g)?.length ?? 0).toBeGreaterThanOrEqual(1);
    expect(agentOut).toMatch(/msg="issued"/);
    expect(keys.size).toBeGreaterThanOrEqual(2); // rekeyed on renewal
    expect(report.missing, JSON.stringify(report)).toBe(0);
    expect(report.mismatched, JSON.stringify(report)).toBe(0);
    expect(report.consistent).toBeGreaterThan(100);
    expect(report.versions).toBeGreaterThanOrEqual(2);
    const published = agentOut.match(/msg="published"/g)!.length;
    await eventually(5_000, "reload after every publication", async () => (existsSync(reloadLog) ? readFileSync(reloadLog, "utf8").split("\n").filter(Boolean).length : 0), (n) => n >= published);
    expect(agentOut).not.toContain("PRIVATE KEY");

    // SIGTERM: a clean stop, exit 0.
    const code = await new Promise<number | null>((resolve) => {
      agent!.once("exit", (c) => resolve(c));
      agent!.kill("SIGTERM");
    });
    expect(code).toBe(0);
  }, 60_000);
});
