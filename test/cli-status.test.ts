import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaClient } from "./harness/ca-client.js";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { REPO } from "./harness/paths.js";

/** The operator's first questions (issue 16): `fleetca status`, `--version`, one-line usage errors. */
describe("fleetca status", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("says where the CA is, how it is protected, its hierarchy, CRLs, counts and the running daemon", async () => {
    const a = await ca.issue("status-a");
    await ca.issue("status-b");
    expect((await ws.cli(["revoke", a.serial, "--reason", "keyCompromise"])).code).toBe(0);
    const r = await ws.cli(["status", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Record<string, any>;
    expect(s.dataDir).toBe(ws.dataDir);
    expect(s.configFile).toBe(ws.configPath);
    expect(s.protection).toBe("development");
    expect(s.issuers.map((i: { role: string }) => i.role)).toEqual(["root", "intermediate"]);
    const root = s.issuers[0];
    // The fingerprint cert-agent pins: SHA-256 of the root DER as /roots.pem serves it.
    const pem = await (await fetch(`${d.publicUrl}/roots.pem`)).text();
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    expect(root.sha256).toBe((await import("node:crypto")).createHash("sha256").update(der).digest("hex"));
    expect(s.issuers[1]).toMatchObject({ current: true, status: "active" });
    // Default lifetime 24 h: a fresh certificate already expires within 24 h.
    expect(s.certificates).toEqual({ valid: 1, expiringWithin24h: 1, revoked: 1, expired: 0 });
    expect(s.internalCertificates.valid).toBe(1);
    expect(s.crls.length).toBeGreaterThanOrEqual(2); // the root's and the intermediate's
    for (const c of s.crls) expect(Date.parse(c.nextUpdate)).toBeGreaterThan(Date.now());
    expect(s.daemon).toMatchObject({ running: true, apiUrl: d.apiUrl, publicUrl: d.publicUrl, healthz: expect.stringMatching(/^200/) });

    const human = await ws.cli(["status"]);
    expect(human.stdout).toMatch(/^protection: +DEVELOPMENT/m);
    expect(human.stdout).toContain(`SHA-256 ${root.sha256}`);
    expect(human.stdout).toMatch(/^certificates: 1 valid \(1 expiring within 24h\), 1 revoked, 0 expired$/m);
    expect(human.stdout).toMatch(/^daemon: +running, pid \d+/m);
  });

  it("lists one API serving certificate after restarts: the earlier ones are superseded (--all shows them)", async () => {
    for (let i = 0; i < 2; i++) {
      await d.stop();
      d = await ws.start();
    }
    const api = async (args: string[]) =>
      (JSON.parse((await ws.cli(["list", "--json", ...args])).stdout) as Array<{ provisioner: string; supersededBy: string | null }>).filter((c) => c.provisioner === "fleetca-api");
    const current = await api([]);
    expect(current).toHaveLength(1);
    const all = await api(["--all"]);
    expect(all).toHaveLength(3);
    expect(all.filter((c) => c.supersededBy !== null)).toHaveLength(2);
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  });

  it("a second serve on the same dataDir, or on a port in use, fails with one line before minting anything", async () => {
    const before = ws.rowCounts();
    const second = await ws.cli(["serve"]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/^fleetca: another fleetca serve \(pid \d+\) is running on /m);
    // Another CA (its own dataDir) configured on this daemon's API port.
    const other = new CaWorkspace();
    try {
      writeFileSync(other.configPath, readFileSync(other.configPath, "utf8").replace('api: "127.0.0.1:0"', `api: "${new URL(d.apiUrl).host}"`));
      const busy = await other.cli(["serve"]);
      expect(busy.code).toBe(1);
      expect(busy.stderr.trim()).toMatch(/^fleetca: listen\.api 127\.0\.0\.1:\d+: already in use/);
    } finally {
      other.remove();
    }
    expect(ws.rowCounts()).toEqual(before);
    // A lock whose holder died (kill -9) does not keep the next daemon out.
    const pid = d.child.pid!;
    process.kill(pid, "SIGKILL");
    await new Promise((r) => d.child.once("exit", r));
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  });

  it("names --config and FLEETCA_CONFIG when there is no CA where it looked", async () => {
    const empty = new CaWorkspace();
    try {
      const r = await empty.cli(["status"]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/^fleetca: no CA in .*--config.*FLEETCA_CONFIG/);
    } finally {
      empty.remove();
    }
  });

  it("prints its version, and a usage mistake is one line with a pointer to --help, exit 2", async () => {
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string };
    const v = await ws.cli(["--version"]);
    expect(v.stdout.trim()).toBe(pkg.version);
    for (const args of [["bogus"], ["revoke"], ["status", "--nope"]]) {
      const r = await ws.cli(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(r.stderr).toMatch(/^fleetca: .*\(see --help\)$/m);
    }
  });
});
