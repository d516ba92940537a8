import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaClient } from "./harness/ca-client.js";
import { freePort, runAgent } from "./harness/cert-agent.js";
import { eventually } from "./harness/eventually.js";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { openssl } from "./harness/openssl.js";
import { FLEETCA_BIN } from "./harness/paths.js";

const execFileAsync = promisify(execFile);

/** Issue 16: what a new operator runs into in the first hour, after the README's two commands. */
describe("the URLs certificates carry follow listen.public", () => {
  it("a config with only listen.public changed: certificates name that port in their CDP and AIA; /healthz via status --health", async () => {
    const ws = new CaWorkspace();
    const port = await freePort();
    writeFileSync(ws.configPath, readFileSync(ws.configPath, "utf8").replace('public: "127.0.0.1:0"', `public: "127.0.0.1:${port}"`));
    let d: DaemonProcess | undefined;
    try {
      d = await ws.start();
      expect(d.publicUrl).toBe(`http://127.0.0.1:${port}`);
      const ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
      const leaf = openssl(["x509", "-in", (await ca.issue("web-1")).certPath, "-noout", "-text"]);
      expect(leaf).toMatch(new RegExp(`URI:http://127\\.0\\.0\\.1:${port}/crl/[0-9a-f]+`));
      expect(leaf).toContain(`OCSP - URI:http://127.0.0.1:${port}/ocsp`);
      expect(leaf).toContain(`CA Issuers - URI:http://127.0.0.1:${port}/intermediate.crt`);
      // The intermediate, made when serve initialised the empty dataDir, names the root's CRL there too.
      expect(openssl(["x509", "-in", ca.intermediatePath, "-noout", "-text"])).toContain(`URI:http://127.0.0.1:${port}/crl/`);
      // A loopback listener needs no warning; the start names the config and the new root loudly.
      expect(d.output).not.toMatch(/publicUrl is not set/);
      expect(d.output).toMatch(new RegExp(`level=warn .*INITIALISING A NEW CA.* config=${ws.configPath.replace(/[/.]/g, "\\$&")}`));
      expect(d.output).toMatch(/msg="new CA initialised[^"]*" .*rootFingerprint=[0-9a-f]{64}/);
      const first = d;
      await eventually(5_000, "ready line", async () => first.output, (o) => /msg="fleetca ready" .*rootFingerprint=[0-9a-f]{64}/.test(o));

      const healthy = await ws.cli(["status", "--health"]);
      expect(healthy.code, healthy.stderr).toBe(0);
      expect(healthy.stdout).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${port}/healthz: 200 `));
      await d.stop();
      const down = await ws.cli(["status", "--health"]);
      expect(down.code).toBe(1);
      expect(down.stdout).toMatch(/^no fleetca serve is running on /);
      // status --json against the stopped daemon: everything but the daemon, which is not running.
      const s = JSON.parse((await ws.cli(["status", "--json"])).stdout) as { daemon: unknown; issuers: unknown[] };
      expect(s.daemon).toEqual({ running: false });
      expect(s.issuers).toHaveLength(2);
      // The root fingerprint at every start, not only the first; no second "new CA".
      const again = await ws.start();
      d = again;
      await eventually(5_000, "ready line", async () => again.output, (o) => /msg="fleetca ready" .*rootFingerprint=[0-9a-f]{64}/.test(o));
      expect(again.output).not.toMatch(/INITIALISING/);
    } finally {
      await d?.stop();
      ws.remove();
    }
  });

  it("a wildcard listener without publicUrl: localhost in certificates, and a warning naming publicUrl; FLEETCA_PUBLIC_URL sets it", async () => {
    const ws = new CaWorkspace();
    const port = await freePort();
    writeFileSync(ws.configPath, readFileSync(ws.configPath, "utf8").replace('public: "127.0.0.1:0"', `public: "0.0.0.0:${port}"`));
    let d: DaemonProcess | undefined;
    try {
      d = await ws.start();
      expect(d.output).toMatch(new RegExp(`level=warn .*publicUrl is not set: certificates name http://localhost:${port} `));
      const ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
      expect(openssl(["x509", "-in", (await ca.issue("wild")).certPath, "-noout", "-text"])).toContain(`OCSP - URI:http://localhost:${port}/ocsp`);
      await d.stop();
      // The container's way: the URL comes from the environment, over the file; no warning then.
      d = await ws.start({ FLEETCA_PUBLIC_URL: `http://ca.fleet.test:${port}` });
      expect(d.output).not.toMatch(/publicUrl is not set/);
      const again = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
      expect(openssl(["x509", "-in", (await again.issue("named")).certPath, "-noout", "-text"])).toContain(`OCSP - URI:http://ca.fleet.test:${port}/ocsp`);
      await d.stop();
      const bad = await ws.cli(["status"], { FLEETCA_PUBLIC_URL: "ftp://x" });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/^fleetca: .*FLEETCA_PUBLIC_URL: expected an absolute http: or https: URL/);
    } finally {
      await d?.stop();
      ws.remove();
    }
  });
});

describe("--json for scripts: init, token create, revoke", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess | undefined;
  beforeAll(() => {
    ws = new CaWorkspace();
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("init --json, token create --json, revoke --json: one JSON object each", async () => {
    const init = await ws.cli(["init", "--json"]);
    expect(init.code, init.stderr).toBe(0);
    const i = JSON.parse(init.stdout) as Record<string, unknown>;
    expect(i).toMatchObject({ dataDir: ws.dataDir, configFile: ws.configPath, protection: "development" });
    expect(i.rootFingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(i.rootKeyId).toMatch(/^[0-9a-f]+$/);
    // The human form names the config it read and the URL certificates will carry.
    const again = await ws.cli(["init"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^fleetca: .* already holds a CA; refusing to overwrite it\n$/);

    d = await ws.start();
    const t = await ws.cli(["token", "create", "--sub", "web-9", "--san", "web-9.internal", "--ttl", "2m", "--json"]);
    expect(t.code, t.stderr).toBe(0);
    const tok = JSON.parse(t.stdout) as { token: string; subject: string; sans: string[]; audience: string; provisioner: string; expiresAt: string };
    expect(tok).toMatchObject({ subject: "web-9", sans: ["web-9.internal"], audience: `${d.apiUrl}/v1/sign`, provisioner: "bootstrap" });
    expect(tok.token.split(".")).toHaveLength(3);
    expect(Date.parse(tok.expiresAt) - Date.now()).toBeGreaterThan(60_000);
    expect(Date.parse(tok.expiresAt) - Date.now()).toBeLessThanOrEqual(120_000);

    const ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    const leaf = await ca.issue("web-10");
    const r = await ws.cli(["revoke", leaf.serial, "--reason", "keyCompromise", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const rev = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(rev).toMatchObject({ serial: leaf.serial, reason: "keyCompromise", alreadyRevoked: false });
    expect(Date.parse(rev.revokedAt as string)).toBeGreaterThan(0);
    const repeat = JSON.parse((await ws.cli(["revoke", leaf.serial, "--json"])).stdout) as Record<string, unknown>;
    expect(repeat).toMatchObject({ serial: leaf.serial, revokedAt: rev.revokedAt, alreadyRevoked: true });
  });
});

describe("a config from another directory", () => {
  it("a relative dataDir resolves against the config file; where there is no CA the error names the config and how to pick another", async () => {
    const ws = new CaWorkspace();
    try {
      const elsewhere = join(ws.dir, "etc", "fleetca");
      mkdirSync(elsewhere, { recursive: true });
      const config = join(elsewhere, "config.yaml");
      writeFileSync(config, 'dataDir: ./state\nlisten: { api: "127.0.0.1:0", public: "127.0.0.1:0" }\n');
      // From another working directory, the config named by FLEETCA_CONFIG (what a unit file does).
      const run = (args: string[]) =>
        execFileAsync(process.execPath, [FLEETCA_BIN, ...args], { cwd: ws.dir, env: { ...ws.env, FLEETCA_CONFIG: config } }).then(
          (r) => ({ code: 0, ...r }),
          (e: { code: number; stdout: string; stderr: string }) => e,
        );
      const none = await run(["list"]);
      expect(none.code).toBe(1);
      expect(none.stderr.trim().split("\n")).toHaveLength(1);
      expect(none.stderr).toBe(`fleetca: no database at ${join(elsewhere, "state", "fleetca.db")}: run "fleetca init" first (config ${config}; pass --config FILE or set FLEETCA_CONFIG for another)\n`);
      const init = await run(["init"]);
      expect(init.code, init.stderr).toBe(0);
      expect(init.stdout).toContain(`initialised CA in ${join(elsewhere, "state")}\nconfig:               ${config}\n`);
      expect(existsSync(join(elsewhere, "state", "fleetca.db"))).toBe(true);
      expect(existsSync(join(ws.dir, "state"))).toBe(false);
    } finally {
      ws.remove();
    }
  });
});

describe("usage errors are one line and exit 2", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("fleetca: unknown command, unknown option, missing argument, missing required option, bad choice", async () => {
    const cases = [["frobnicate"], ["list", "--nope"], ["revoke"], ["token", "create", "--sub", "x"], ["token", "create", "--san"], ["audit", "prove"], ["rotate"], ["init", "extra-arg"]];
    const results = await Promise.all(cases.map((args) => ws.cli(args)));
    results.forEach((r, i) => {
      const what = cases[i]!.join(" ");
      expect(r.code, `${what}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim().split("\n"), what).toHaveLength(1);
      expect(r.stderr, what).toMatch(/^fleetca: .+ \(see --help\)\n$/);
      expect(r.stdout, what).toBe("");
    });
  });

  it("cert-agent: unknown option, missing required option, missing --san", async () => {
    const cases = [["--frobnicate"], ["--ca", "https://ca.test:8443"], ["--ca", "https://ca.test:8443", "--root-fingerprint", "ab".repeat(32), "--token-file", "/dev/null", "--out", "/tmp/x"], ["--out"]];
    const results = await Promise.all(cases.map((args) => runAgent(args)));
    results.forEach((r, i) => {
      const what = cases[i]!.join(" ");
      expect(r.code, `${what}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim().split("\n"), what).toHaveLength(1);
      expect(r.stderr, what).toMatch(/^cert-agent: .+ \(see cert-agent --help\)\n$/);
    });
  });
});
