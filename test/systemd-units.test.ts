/**
 * scripts/systemd/*.service: the hardening every unit must keep, and ExecStart command lines the
 * real binaries accept. The command lines are run (with systemd's ${VARIABLES} given test values)
 * against dist/: a renamed or removed flag makes the bin refuse it as an unknown option, and this
 * test fail, before a host's service does. Where systemd-analyze is installed, it also verifies
 * the units (unknown keys, bad values) and scores their exposure offline.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO } from "./harness/paths.js";

const execFileAsync = promisify(execFile);
const UNITS = join(REPO, "scripts", "systemd");
const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

type Unit = Record<string, Record<string, string[]>>;

/** systemd's unit syntax, as far as these files use it: sections, repeated keys, `\` continuations, # and ; comments. */
function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section = "";
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      unit[section] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    if (eq < 0 || !section) throw new Error(`not a unit line: ${line}`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim().replace(/\s+/g, " ");
    (unit[section]![key] ??= []).push(value);
  }
  return unit;
}

const load = (name: string) => parseUnit(readFileSync(join(UNITS, name), "utf8"));

/** The last assignment wins for single-valued keys (systemd.syntax(7)). */
const last = (u: Unit, key: string) => u.Service?.[key]?.at(-1);

/** ExecStart's words with ${VAR} replaced (systemd passes a ${VAR} as one word). */
function execStart(u: Unit, vars: Record<string, string>): string[] {
  const cmd = last(u, "ExecStart");
  expect(cmd, "ExecStart").toBeTruthy();
  return cmd!.split(" ").map((w) => w.replace(/\$\{([A-Z_]+)\}/g, (_m, v: string) => {
    if (!(v in vars)) throw new Error(`ExecStart uses \${${v}}: give it a test value`);
    return vars[v]!;
  }));
}

/** Runs the bin ExecStart names, from this checkout's dist/, with ExecStart's arguments. */
async function run(words: string[]): Promise<{ code: number; stderr: string }> {
  expect(words[0]).toBe("/usr/bin/node");
  const bin = /\/opt\/fleetca\/(dist\/cli\/[a-z-]+\.js)$/.exec(words[1]!);
  expect(bin, `ExecStart runs a bin of this package: ${words[1]}`).toBeTruthy();
  try {
    await execFileAsync(process.execPath, [join(REPO, bin![1]!), ...words.slice(2)], { timeout: 10_000 });
    return { code: 0, stderr: "" };
  } catch (e) {
    const err = e as { code?: number; stderr?: string };
    return { code: typeof err.code === "number" ? err.code : -1, stderr: err.stderr ?? "" };
  }
}

function expectHardened(u: Unit, writable: string): void {
  const hardening: Record<string, string> = {
    NoNewPrivileges: "yes",
    ProtectSystem: "strict",
    ProtectHome: "yes",
    PrivateTmp: "yes",
    CapabilityBoundingSet: "",
    RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
    SystemCallFilter: "@system-service",
    Restart: "on-failure",
  };
  for (const [k, v] of Object.entries(hardening)) expect(last(u, k), k).toBe(v);
  expect(last(u, "RestartSec"), "RestartSec").toMatch(/^\d+s$/);
  expect(last(u, "ReadWritePaths"), "ReadWritePaths").toBe(writable);
  expect(last(u, "User"), "a dedicated user").toMatch(/^[a-z][a-z-]+$/);
  expect(last(u, "User")).not.toBe("root");
  expect(last(u, "Group")).toBe(last(u, "User"));
  // No secret in the unit itself: the passphrase and the token come in through LoadCredential=.
  expect(u.Service!.Environment ?? []).toEqual([]);
  expect(last(u, "LoadCredential"), "LoadCredential").toMatch(/^[a-z]+:\/etc\/[a-z-]+\/[a-z]+$/);
}

describe.concurrent("systemd units (scripts/systemd)", () => {
  it("fleetca.service: hardened, dataDir the only writable path, passphrase by credential, `serve --config` accepted by dist/cli/fleetca.js", async () => {
    const u = load("fleetca.service");
    expectHardened(u, "/var/lib/fleetca");
    expect(last(u, "LoadCredential")).toBe("passphrase:/etc/fleetca/passphrase");
    // fleetca reads a passphrase file only through the config's passphraseFile: the unit's header
    // must tell the operator the credential's path for this unit.
    expect(readFileSync(join(UNITS, "fleetca.service"), "utf8")).toContain("passphraseFile: /run/credentials/fleetca.service/passphrase");
    const words = execStart(u, {});
    expect(words.slice(2, 3)).toEqual(["serve"]);
    // A config that does not exist: the command and every flag parsed, then the config is looked for.
    const missing = join(REPO, "no-such-dir", "config.yaml");
    const r = await run(words.map((w) => (w === "/etc/fleetca/config.yaml" ? missing : w)));
    expect(r.stderr).not.toMatch(/unknown (option|command)/i);
    expect(r.stderr).toContain(`config file ${missing} does not exist`);
    expect(r.code).not.toBe(0);
  });

  it("cert-agent.service: hardened, out dir the only writable path, token by credential, SIGHUP reload, flags accepted by dist/cli/cert-agent.js", async () => {
    const u = load("cert-agent.service");
    expectHardened(u, "/var/lib/cert-agent");
    expect(last(u, "ExecReload")).toBe("/bin/kill -HUP $MAINPID");
    const missingToken = join(REPO, "no-such-dir", "token");
    const words = execStart(u, {
      CERT_AGENT_CA: "https://ca.internal:8443",
      CERT_AGENT_ROOT_FINGERPRINT: "ab".repeat(32),
      CERT_AGENT_SAN: "web-1.internal",
      CREDENTIALS_DIRECTORY: join(REPO, "no-such-dir"),
    });
    const flag = (name: string) => words[words.indexOf(name) + 1];
    expect(flag("--token-file")).toBe(missingToken);
    expect(flag("--out")!.startsWith(`${last(u, "ReadWritePaths")}/`), "--out is under ReadWritePaths").toBe(true);
    // Every flag parses and every value validates; the agent stops at the first thing it touches,
    // the (absent) token file, before doing anything.
    const r = await run(words);
    expect(r.stderr).not.toMatch(/unknown option|unexpected argument/i);
    expect(r.stderr).toContain(`--token-file ${missingToken} does not exist`);
    expect(r.code).toBe(2);
  });

  it.skipIf(!existsSync(SYSTEMD_ANALYZE))("systemd-analyze verifies both units and rates their exposure OK (≤ 2.0)", async () => {
    const files = ["fleetca.service", "cert-agent.service"].map((f) => join(UNITS, f));
    const verify = await execFileAsync(SYSTEMD_ANALYZE, ["verify", ...files]);
    expect(verify.stderr + verify.stdout, "systemd-analyze verify").toBe("");
    const sec = await execFileAsync(SYSTEMD_ANALYZE, ["security", "--offline=true", ...files]).catch((e: { stdout: string }) => e);
    const levels = [...sec.stdout.matchAll(/Overall exposure level for (\S+): ([\d.]+)/g)].map((m) => [m[1], Number(m[2])] as const);
    expect(levels.map(([u]) => u).sort()).toEqual(["cert-agent.service", "fleetca.service"]);
    for (const [unit, level] of levels) expect(level, unit).toBeLessThanOrEqual(2.0);
  });
});
