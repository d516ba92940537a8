import { afterAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { CaWorkspace } from "./harness/fleetca-process.js";

/** Operator mistakes get one line on stderr and a non-zero exit, never a stack trace (SPEC.md). */
describe("operator errors", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  const oneLine = (stderr: string) => {
    expect(stderr).toMatch(/^fleetca: [^\n]+\n$/);
    expect(stderr).not.toMatch(/\n\s+at /);
  };

  it.each([
    ["an unknown key", "bogus: 1\n", /unknown key\(s\) bogus/],
    ["a bad duration", "issuance: { maxTTL: 10x }\n", /issuance\.maxTTL: invalid duration "10x"/],
    ["defaultTTL above maxTTL", "issuance: { defaultTTL: 200h }\n", /issuance\.defaultTTL: must not exceed issuance\.maxTTL/],
    // Issue 15: a lifetime under issuance.minTTL (default 60s) is a mistake, refused at load.
    ["defaultTTL below the default minTTL", "issuance: { defaultTTL: 1s }\n", /issuance\.defaultTTL: must be at least issuance\.minTTL/],
    ["a minTTL above both lifetimes", "issuance: { defaultTTL: 10m, maxTTL: 20m, minTTL: 30m }\n", /issuance\.defaultTTL: must be at least issuance\.minTTL/],
    ["maxTTL alone below minTTL", "issuance: { defaultTTL: 2m, maxTTL: 59s }\n", /issuance\.maxTTL: must be at least issuance\.minTTL/],
    ["a minTTL under a second", "issuance: { minTTL: 500ms }\n", /issuance\.minTTL/],
    ["a bad listen address", "listen: { api: nope }\n", /listen\.api: expected host:port/],
    ["an unknown key type", "ca: { keyType: dsa-1024 }\n", /ca\.keyType/],
    ["a passphrase in the YAML", "passphrase: hunter2\n", /passphrase must not be in the config/],
    ["invalid YAML", "listen: [\n", /not valid YAML/],
  ])("refuses %s in the config", async (_name, yaml, expected) => {
    writeFileSync(ws.configPath, yaml);
    const r = await ws.cli(["init"]);
    expect(r.code).not.toBe(0);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(expected);
    expect(r.stderr).not.toContain("hunter2");
  });

  it("explains commands run before init", async () => {
    writeFileSync(ws.configPath, `dataDir: ${ws.dataDir}\n`);
    const t = await ws.cli(["token", "create", "--sub", "a", "--san", "a.internal"]);
    expect(t.code).not.toBe(0);
    oneLine(t.stderr);
    expect(t.stderr).toMatch(/run "fleetca init" first/);
    const l = await ws.cli(["list"]);
    oneLine(l.stderr);
  });

  it("refuses a malformed SAN and an over-long token ttl", async () => {
    writeFileSync(ws.configPath, `dataDir: ${ws.dataDir}\n`);
    expect((await ws.cli(["init"])).code).toBe(0);
    const bad = await ws.cli(["token", "create", "--sub", "a", "--san", "bad_name!", "--aud", "https://x/v1/sign"]);
    oneLine(bad.stderr);
    expect(bad.stderr).toMatch(/invalid DNS SAN/);
    const long = await ws.cli(["token", "create", "--sub", "a", "--san", "a.internal", "--ttl", "48h", "--aud", "https://x/v1/sign"]);
    oneLine(long.stderr);
    expect(long.stderr).toMatch(/maxTokenTTL/);
  });
});
