/**
 * examples/sidecar/ must keep working as the README tells it: a real daemon, `cert-agent --once`
 * publishing a set, `server.mjs` serving it (importing `fleetca/reload` through the package's
 * exports, as a service would), one HTTPS request verified against the agent's ca.pem,
 * `client.mjs` presenting the same set over mTLS, and a second `cert-agent --once` (a renewal)
 * that the running server picks up without a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { promisify } from "node:util";
import type { TLSSocket } from "node:tls";
import { agentWorkspace, rootFingerprint, runAgent } from "./harness/cert-agent.js";
import { eventually } from "./harness/eventually.js";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";
import { REPO } from "./harness/paths.js";

const execFileAsync = promisify(execFile);
const EXAMPLE = join(REPO, "examples", "sidecar");
const SAN = "localhost";

function get(port: number, ca: string): Promise<{ status: number; body: string; served: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/", servername: SAN, ca, agent: false }, (res) => {
      const served = (res.socket as TLSSocket).getPeerCertificate().serialNumber.toLowerCase();
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, served }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("examples/sidecar (server.mjs and client.mjs on what cert-agent publishes)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let server: ChildProcess | undefined;

  beforeAll(async () => {
    ws = await agentWorkspace();
    d = await ws.start();
  }, 30_000);

  afterAll(async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      server.kill("SIGKILL");
      await new Promise((r) => server!.once("exit", r));
    }
    await d?.stop();
    ws?.remove();
  });

  it("serves the published set over HTTPS, answers an mTLS client, and picks up a renewal", async () => {
    const out = join(ws.dir, "out");
    const tokenFile = join(ws.dir, "svc.token");
    writeFileSync(tokenFile, `${await ws.token("svc", [SAN])}\n`);
    const agentArgs = ["--ca", d.apiUrl, "--root-fingerprint", await rootFingerprint(d.publicUrl), "--token-file", tokenFile, "--out", out, "--san", SAN, "--once"];
    const first = await runAgent(agentArgs);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    const serialOf = () => new X509Certificate(readFileSync(join(out, "cert.pem"))).serialNumber.toLowerCase();
    const issued = serialOf();

    server = spawn(process.execPath, [join(EXAMPLE, "server.mjs"), "--dir", out, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
    let serverOut = "";
    server.stdout!.on("data", (b: Buffer) => (serverOut += b.toString()));
    server.stderr!.on("data", (b: Buffer) => (serverOut += b.toString()));
    const { seen } = await eventually(5_000, "server.mjs listening", async () => /listening url=https:\/\/127\.0\.0\.1:(\d+) serial=([0-9a-f]+)/.exec(serverOut), (m) => m !== null);
    const port = Number(seen![1]);
    expect(seen![2]).toBe(issued);

    // One request, verified against the agent's ca.pem only.
    const ca = readFileSync(join(out, "ca.pem"), "utf8");
    const plain = await get(port, ca);
    expect(plain.status).toBe(200);
    expect(plain.served).toBe(issued);
    expect(JSON.parse(plain.body)).toEqual({ serial: issued, client: null });

    // The README's curl lines: the roots only; then mTLS with the agent's fullchain.pem and key.pem.
    const curl = (...extra: string[]) => execFileAsync("curl", ["-sS", "--cacert", join(out, "ca.pem"), ...extra, `https://${SAN}:${port}/`], { timeout: 10_000 });
    expect(JSON.parse((await curl()).stdout)).toEqual({ serial: issued, client: null });
    expect(JSON.parse((await curl("--cert", join(out, "fullchain.pem"), "--key", join(out, "key.pem"))).stdout)).toEqual({ serial: issued, client: `DNS:${SAN}` });

    // client.mjs: mTLS through the watcher's agent(); the server names the SANs it verified.
    const client = await execFileAsync(process.execPath, [join(EXAMPLE, "client.mjs"), "--dir", out, "--url", `https://${SAN}:${port}/`, "--connect", "127.0.0.1"], { timeout: 10_000 });
    expect(JSON.parse(client.stdout)).toEqual({ serial: issued, client: `DNS:${SAN}` });

    // A renewal published while it runs: new connections get it, no restart. (The agent exits 2 s
    // after publishing, once the replaced set is deleted: the server is asked meanwhile.)
    const second = runAgent(agentArgs);
    const { seen: reloaded } = await eventually(8_000, "server.mjs reloaded", async () => /reloaded serial=([0-9a-f]+)/.exec(serverOut), (m) => m !== null);
    const renewed = reloaded![1]!;
    expect(renewed).not.toBe(issued);
    const after = await get(port, ca);
    expect(after.served).toBe(renewed);
    expect(JSON.parse(after.body).serial).toBe(renewed);
    const done = await second;
    expect(done.code, done.stderr + done.stdout).toBe(0);
    expect(serialOf()).toBe(renewed);
    expect(serverOut).not.toMatch(/ignored a published set|watch error/);

    const code = await new Promise<number | null>((resolve) => {
      server!.once("exit", (c) => resolve(c));
      server!.kill("SIGTERM");
    });
    expect(code).toBe(0);
  }, 30_000);
});
