import { afterAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { CaWorkspace, type CliResult } from "./harness/fleetca-process.js";
import { makeCsr } from "./harness/openssl.js";
import { fetchRoots, postApi, signBody } from "./harness/http.js";
import { eventually } from "./harness/eventually.js";
import { workerPids } from "./harness/workers.js";
import { openKeyStore } from "../src/cli/data-dir.js";
import { Secret } from "../src/core/secret.js";

const PASS_A = "passphrase-A for the kek rotation test";
const PASS_B = "passphrase-B for the kek rotation test";

interface KeyFile {
  name: string;
  publicKeySpki: string;
  kek: { id: string; version: number };
  dek: { iv: string; ct: string; tag: string };
  key: { iv: string; ct: string; tag: string };
}

function keyFiles(dataDir: string): Map<string, KeyFile> {
  const dir = join(dataDir, "keys");
  return new Map(
    readdirSync(dir)
      .filter((f) => f.endsWith(".key.json"))
      .map((f) => [f, JSON.parse(readFileSync(join(dir, f), "utf8")) as KeyFile]),
  );
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? [p, ...filesUnder(p)] : [p];
  });
}

/**
 * Every file in dataDir 0600 or stricter, every directory 0700 or stricter; no rotation leftovers
 * (a killed rotation's lock stays until the next rotation takes it over: its holder is dead).
 */
function expectPrivateDataDir(dataDir: string, opts: { afterCrash?: boolean } = {}): void {
  for (const p of [dataDir, ...filesUnder(dataDir)]) {
    expect((statSync(p).mode & 0o077).toString(8), p).toBe("0");
  }
  for (const leftover of ["kek-rotation.staging", "kek-rotation.committed", ...(opts.afterCrash ? [] : ["kek-rotation.lock"])]) {
    expect(existsSync(join(dataDir, leftover)), leftover).toBe(false);
  }
}

/** Neither passphrase in any file of the workspace (but the one the test wrote on purpose) nor in any output. */
function expectNoPassphraseAnywhere(ws: CaWorkspace, outputs: string[], except: string[] = []): void {
  const passes = [PASS_A, PASS_B, "passphrase-C", "passphrase-D"];
  for (const p of filesUnder(ws.dir)) {
    if (except.includes(p) || statSync(p).isDirectory()) continue;
    const bytes = readFileSync(p);
    for (const s of passes) expect(bytes.includes(Buffer.from(s)), `${s} in ${p}`).toBe(false);
  }
  for (const o of outputs) for (const s of passes) expect(o).not.toContain(s);
}

/** Opens the data dir in-process (recovery included) and unwraps every key: what any start needs. */
function unwrapAll(dataDir: string, passphrase: string | undefined): number {
  const { keys } = openKeyStore(dataDir, passphrase === undefined ? undefined : new Secret(passphrase), { create: false });
  const names = keys.names();
  for (const n of names) keys.load(n);
  return names.length;
}

function expectOneLineError(r: CliResult, pattern: RegExp): void {
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(/^fleetca: [^\n]*\n$/);
  expect(r.stderr).toMatch(pattern);
}

describe("fleetca rotate kek: passphrase A -> B", () => {
  // Ports are 0, so tokens name the CA by its configured apiUrl (as in restart.test.ts).
  const ws = new CaWorkspace({ passphrase: PASS_A, extraConfig: "apiUrl: https://ca.test.internal:8443\n" });
  afterAll(() => ws.remove());
  const outputs: string[] = [];
  const run = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = await ws.cli(args, env);
    outputs.push(r.stdout, r.stderr);
    return r;
  };

  async function issue(apiUrl: string, publicUrl: string, name: string): Promise<X509Certificate> {
    const roots = await fetchRoots(publicUrl);
    const csr = makeCsr(ws.dir, name, { cn: `${name}.internal` });
    const r = await postApi(`${apiUrl}/v1/sign`, roots, { token: await ws.token(name, [`${name}.internal`]), body: signBody(csr.csrPem) });
    expect(r.status, r.raw).toBe(201);
    return new X509Certificate(r.body.certificate as string);
  }

  it("re-wraps every DEK under KEK version 2 while the daemon runs; the CA keys are unchanged", async () => {
    expect((await run(["init"])).code).toBe(0);
    const before = keyFiles(ws.dataDir);
    expect([...before.keys()].some((f) => f.startsWith("provisioner-bootstrap"))).toBe(true);

    // Operator mistakes first: no new passphrase, the same passphrase again.
    expectOneLineError(await run(["rotate", "kek"], { FLEETCA_NEW_PASSPHRASE: "" }), /no new passphrase: give --new-passphrase-file F \(mode 0600\) or set FLEETCA_NEW_PASSPHRASE/);
    expectOneLineError(await run(["rotate", "kek"], { FLEETCA_NEW_PASSPHRASE: PASS_A }), /the new passphrase is the same as the current one/);

    const d1 = await ws.start();
    try {
      const intermediateBefore = Buffer.from(await (await fetch(`${d1.publicUrl}/intermediate.crt`)).arrayBuffer());
      const r = await run(["rotate", "kek"], { FLEETCA_NEW_PASSPHRASE: PASS_B });
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trimEnd().split("\n");
      const names = [...before.keys()].map((f) => f.replace(/\.key\.json$/, "")).sort();
      expect(lines.slice(0, names.length)).toEqual(names.map((n) => `re-wrapped ${n}`));
      // root, intermediate, the bootstrap provisioner's key and the issuance log's audit key
      expect(names).toHaveLength(4);
      expect(lines[names.length]).toMatch(/^rotated KEK version 1 \(scrypt-[0-9a-f]{16}\) to KEK version 2 \(scrypt-[0-9a-f]{16}\): 4 keys re-wrapped, no CA key changed$/);
      expect(r.stdout).toMatch(/restart it with the new passphrase/);
      // The issuance log records the rotation (names and versions only).
      const events = (await run(["audit", "query", "--since", "1h", "--json"])).stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(events.filter((e) => e.kind === "event")).toEqual([expect.objectContaining({ event: "kek_rotated", details: { from: "version 1", to_version: 2, keys: 4, dev_key_destroyed: false } })]);

      // The running daemon keeps issuing with the key it holds.
      ws.env.FLEETCA_PASSPHRASE = PASS_B; // ws.token() unwraps the (re-wrapped) provisioner key in-process
      const during = await issue(d1.apiUrl, d1.publicUrl, "web-during");
      expect(during.verify(new X509Certificate(intermediateBefore).publicKey)).toBe(true);
    } finally {
      await d1.stop();
    }

    const after = keyFiles(ws.dataDir);
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [f, b] of before) {
      const a = after.get(f)!;
      expect(a.publicKeySpki, f).toBe(b.publicKeySpki);
      expect(a.key, f).toEqual(b.key); // the sealed private key, byte for byte
      expect(a.dek, f).not.toEqual(b.dek);
      expect(a.kek.version, f).toBe(2);
      expect(a.kek.id, f).not.toBe(b.kek.id);
    }
    const params = JSON.parse(readFileSync(join(ws.dataDir, "kek.json"), "utf8"));
    expect(params.version).toBe(2);
    expect(params.id).toBe(after.values().next().value!.kek.id);
    expectPrivateDataDir(ws.dataDir);
  });

  it("refuses the old passphrase with one line afterwards", async () => {
    const r = await run(["serve"], { FLEETCA_PASSPHRASE: PASS_A });
    expectOneLineError(r, /^fleetca: wrong passphrase: cannot unlock the CA keys in .* \(KEK version 2, since \d{4}-\d\d-\d\dT[^)]+\)\n$/);
    expect(() => unwrapAll(ws.dataDir, PASS_A)).toThrow(/wrong passphrase/);
  });

  it("serves with the new passphrase and signs with the same intermediate key", async () => {
    const spkiBefore = [...keyFiles(ws.dataDir).values()].find((k) => k.name.startsWith("intermediate-"))!.publicKeySpki;
    const d2 = await ws.start({ FLEETCA_PASSPHRASE: PASS_B });
    try {
      outputs.push(d2.output);
      const leaf = await issue(d2.apiUrl, d2.publicUrl, "web-after");
      const intermediate = new X509Certificate(Buffer.from(await (await fetch(`${d2.publicUrl}/intermediate.crt`)).arrayBuffer()));
      const spki = intermediate.publicKey.export({ type: "spki", format: "der" }).toString("base64");
      expect(spki).toBe(spkiBefore);
      expect(leaf.checkIssued(intermediate)).toBe(true);
      expect(leaf.verify(intermediate.publicKey)).toBe(true);
    } finally {
      await d2.stop();
      outputs.push(d2.output);
    }
    expectNoPassphraseAnywhere(ws, outputs);
  });
});

describe("fleetca rotate kek: development mode -> passphrase", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("refuses a new-passphrase file readable by others, then moves to passphrase mode and destroys kek.key", async () => {
    expect((await ws.cli(["init"])).code).toBe(0);
    const devKey = join(ws.dataDir, "kek.key");
    const devKeyBytes = readFileSync(devKey);
    const before = keyFiles(ws.dataDir);
    const pf = join(ws.dir, "new-passphrase");
    writeFileSync(pf, PASS_B + "\n", { mode: 0o644 });
    chmodSync(pf, 0o644);

    const loose = await ws.cli(["rotate", "kek", "--new-passphrase-file", pf]);
    expectOneLineError(loose, /new-passphrase is readable by group or others \(mode 0644\); run: chmod 600/);
    expect(existsSync(devKey)).toBe(true);
    expect(keyFiles(ws.dataDir)).toEqual(before);

    chmodSync(pf, 0o600);
    // A process that opened the CA before the rotation (as a running daemon did) keeps the old KEK.
    const stale = openKeyStore(ws.dataDir, undefined, { create: false });
    const r = await ws.cli(["rotate", "kek", "--new-passphrase-file", pf]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^rotated development-mode KEK \(kek\.key\) to KEK version 2 \(scrypt-[0-9a-f]{16}\): 4 keys re-wrapped, no CA key changed$/m);
    expect(r.stdout).toMatch(/^removed .*kek\.key \(overwritten, then unlinked\); the CA now needs the passphrase$/m);
    expect(existsSync(devKey)).toBe(false);
    expectPrivateDataDir(ws.dataDir);
    for (const [f, a] of keyFiles(ws.dataDir)) {
      expect(a.key, f).toEqual(before.get(f)!.key);
      expect(a.kek.id).toMatch(/^scrypt-/);
    }

    // ...and must neither wrap a new key with it (that key would be lost to the new KEK) nor misread a re-wrapped one.
    await expect(stale.keys.generate("late-key", "ecdsa-p256")).rejects.toThrow(/^cannot create key late-key: the KEK was rotated since this process started; restart it with the new passphrase$/);
    expect(existsSync(join(ws.dataDir, "keys", "late-key.key.json"))).toBe(false);
    const root = stale.keys.names().find((n) => n.startsWith("root-"))!;
    expect(() => stale.keys.load(root)).toThrow(/is wrapped by KEK scrypt-[0-9a-f]{16} \(version 2\), but the configured KEK is dev-[0-9a-f]{16} \(version 1\); after "fleetca rotate kek", restart with the new passphrase$/);

    const without = await ws.cli(["token", "create", "--sub", "a", "--san", "a.internal", "--aud", "https://ca.internal/v1/sign"]);
    expectOneLineError(without, /are protected by a passphrase: set FLEETCA_PASSPHRASE or passphraseFile/);
    const withIt = await ws.cli(["token", "create", "--sub", "a", "--san", "a.internal", "--aud", "https://ca.internal/v1/sign"], { FLEETCA_PASSPHRASE: PASS_B });
    expect(withIt.code, withIt.stderr).toBe(0);

    // The old dev KEK put back by hand is not consulted: kek.json rules now.
    writeFileSync(devKey, devKeyBytes, { mode: 0o600 });
    expect(() => unwrapAll(ws.dataDir, undefined)).toThrow(/protected by a passphrase/);
    expect(unwrapAll(ws.dataDir, PASS_B)).toBe(4);
    expectNoPassphraseAnywhere(ws, [r.stdout, r.stderr, loose.stdout, loose.stderr, without.stderr, withIt.stderr], [pf]);
  });
});

describe("fleetca rotate kek: a kill -9 between any two steps", () => {
  const ws = new CaWorkspace({ passphrase: PASS_A });
  afterAll(() => ws.remove());
  const crash = (step: string, from: string, to: string) =>
    ws.cli(["rotate", "kek"], { FLEETCA_PASSPHRASE: from, FLEETCA_NEW_PASSPHRASE: to, FLEETCA_TEST_KEK_ROTATION_CRASH_AFTER: step });
  const signRootCrl = (pass: string) => ws.cli(["crl", "sign-root"], { FLEETCA_PASSPHRASE: pass });
  const PASS_C = "passphrase-C for the kek rotation test";
  const PASS_D = "passphrase-D for the kek rotation test";

  it("before the commit: the old KEK opens the CA, the new one does not", async () => {
    expect((await ws.cli(["init"])).code).toBe(0);
    const before = keyFiles(ws.dataDir);
    const r = await crash("staged", PASS_A, PASS_B);
    expect(r.stdout).toBe(""); // killed before it could report anything
    expect(existsSync(join(ws.dataDir, "kek-rotation.staging", "kek.json"))).toBe(true);
    expect(existsSync(join(ws.dataDir, "kek-rotation.lock"))).toBe(true);
    expect(keyFiles(ws.dataDir)).toEqual(before);
    const old = await signRootCrl(PASS_A);
    expect(old.code, old.stderr).toBe(0);
    expect(() => unwrapAll(ws.dataDir, PASS_B)).toThrow(/wrong passphrase/);
    expect(unwrapAll(ws.dataDir, PASS_A)).toBe(4);
  });

  it("right after the commit: the next open rolls forward; the new KEK opens the CA, the old one does not", async () => {
    // Also: the dead rotation's lock and staging are taken over and cleared.
    const r = await crash("committed", PASS_A, PASS_B);
    expect(r.stdout).toBe("");
    expect(existsSync(join(ws.dataDir, "kek-rotation.committed"))).toBe(true);
    expect(existsSync(join(ws.dataDir, "kek-rotation.staging"))).toBe(false);
    const refused = await signRootCrl(PASS_A);
    expectOneLineError(refused, /wrong passphrase: cannot unlock the CA keys in .* \(KEK version 2/);
    const ok = await signRootCrl(PASS_B);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(join(ws.dataDir, "kek-rotation.committed"))).toBe(false);
    expect(unwrapAll(ws.dataDir, PASS_B)).toBe(4);
  });

  it("half-way through moving the key files (a mix on disk): the new KEK opens every key", async () => {
    const r = await crash("key-moved", PASS_B, PASS_C);
    expect(r.stdout).toBe("");
    const versions = [...keyFiles(ws.dataDir).values()].map((k) => k.kek.version).sort();
    expect(versions).toEqual([2, 2, 2, 3]); // one key moved, three still staged
    expect(() => unwrapAll(ws.dataDir, PASS_B)).toThrow(/wrong passphrase/); // recovers first, then refuses B
    expect(unwrapAll(ws.dataDir, PASS_C)).toBe(4);
    expect([...keyFiles(ws.dataDir).values()].map((k) => k.kek.version)).toEqual([3, 3, 3, 3]);
    expectPrivateDataDir(ws.dataDir, { afterCrash: true });
  });

  it("after kek.json moved, before the clean-up: the new KEK opens the CA", async () => {
    const r = await crash("params-moved", PASS_C, PASS_D);
    expect(r.stdout).toBe("");
    expect(existsSync(join(ws.dataDir, "kek-rotation.committed"))).toBe(true);
    expectOneLineError(await signRootCrl(PASS_C), /wrong passphrase/);
    const ok = await signRootCrl(PASS_D);
    expect(ok.code, ok.stderr).toBe(0);
    expect(unwrapAll(ws.dataDir, PASS_D)).toBe(4);
    expectPrivateDataDir(ws.dataDir, { afterCrash: true });
    // A finished rotation afterwards still works from the recovered state (D -> A).
    const again = await ws.cli(["rotate", "kek"], { FLEETCA_PASSPHRASE: PASS_D, FLEETCA_NEW_PASSPHRASE: PASS_A });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/to KEK version 5 /);
    expect(unwrapAll(ws.dataDir, PASS_A)).toBe(4);
    expectPrivateDataDir(ws.dataDir);
    expectNoPassphraseAnywhere(ws, [again.stdout, again.stderr]);
  });

  it("refuses to run while another rotation (a live process) holds the lock, changing nothing", async () => {
    const lock = join(ws.dataDir, "kek-rotation.lock");
    writeFileSync(lock, `${process.pid}\n`, { mode: 0o600 });
    const before = keyFiles(ws.dataDir);
    try {
      const r = await ws.cli(["rotate", "kek"], { FLEETCA_PASSPHRASE: PASS_A, FLEETCA_NEW_PASSPHRASE: PASS_B });
      expectOneLineError(r, new RegExp(`another "fleetca rotate kek" is running \\(pid ${process.pid}\\); wait for it to finish`));
      expect(keyFiles(ws.dataDir)).toEqual(before);
    } finally {
      rmSync(lock);
    }
  });
});

describe("fleetca rotate kek under a daemon with workers", () => {
  const ws = new CaWorkspace({ passphrase: PASS_A, listen: "publicWorkers: 1" });
  afterAll(() => ws.remove());

  it("a worker restarted with the old passphrase is logged as needing a daemon restart with the new passphrase", async () => {
    const d = await ws.start();
    try {
      const r = await ws.cli(["rotate", "kek"], { FLEETCA_NEW_PASSPHRASE: PASS_B });
      expect(r.code, r.stderr).toBe(0);
      const [worker] = workerPids(d.child.pid!);
      expect(worker).toBeGreaterThan(0);
      process.kill(worker!, "SIGKILL");
      const { seen } = await eventually(15_000, "the daemon's log line about the rotated KEK", async () => d.output, (o) => /worker cannot unlock the CA keys/.test(o));
      const line = seen.split("\n").find((l) => l.includes("worker cannot unlock the CA keys"))!;
      expect(line).toMatch(/level=error/);
      expect(line).toMatch(/the KEK was rotated \(fleetca rotate kek\) since the daemon started; restart the daemon with the new passphrase/);
      expect(line).toMatch(/wrong passphrase: cannot unlock the CA keys in .* \(KEK version 2/);
      expect(seen).not.toContain(PASS_A);
      expect(seen).not.toContain(PASS_B);
    } finally {
      await d.stop();
    }
  });
});
