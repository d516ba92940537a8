import { afterAll, describe, expect, it } from "vitest";
import { readdirSync, readFileSync, statSync, writeFileSync, chmodSync } from "node:fs";
import { createHash, createPrivateKey } from "node:crypto";
import { join } from "node:path";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { openKek } from "../src/signing/kek.js";
import { open } from "../src/signing/aead.js";
import { Secret } from "../src/core/secret.js";

const PASSPHRASE = "a long passphrase for the tests only";

/** Reads a wrapped key file the way SoftKeyStore does, to get the real key bytes to search for. */
function unwrapForTest(dataDir: string, file: string): Buffer {
  const kek = openKek({ dataDir, passphrase: new Secret(PASSPHRASE), create: false });
  const w = JSON.parse(readFileSync(join(dataDir, "keys", file), "utf8"));
  const dek = kek.unwrap(w.dek, `fleetca-dek/1|${w.name}`);
  expect(dek).not.toBeNull();
  const fp = createHash("sha256").update(Buffer.from(w.publicKeySpki, "base64")).digest("hex");
  const pkcs8 = open(dek!, w.key, `fleetca-key/1|${w.name}|${w.keyType}|${fp}`);
  expect(pkcs8).not.toBeNull();
  return pkcs8!;
}

describe("CA keys at rest", () => {
  const ws = new CaWorkspace({ passphrase: PASSPHRASE });
  afterAll(() => ws.remove());

  it("stores every key envelope-wrapped, 0600, with no PKCS#8 or raw key bytes", async () => {
    const init = await ws.cli(["init"]);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toMatch(/root SHA-256:\s+[0-9a-f]{64}/);
    expect(statSync(ws.dataDir).mode & 0o777).toBe(0o700);
    const files = readdirSync(join(ws.dataDir, "keys"));
    expect(files.some((f) => f.startsWith("root-"))).toBe(true);
    expect(files.some((f) => f.startsWith("intermediate-"))).toBe(true);
    expect(files.some((f) => f.startsWith("provisioner-bootstrap"))).toBe(true);
    for (const f of files) {
      const path = join(ws.dataDir, "keys", f);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const text = readFileSync(path, "utf8");
      expect(text).not.toMatch(/PRIVATE KEY/);
      const wrapped = JSON.parse(text);
      expect(wrapped.kek.id).toMatch(/^scrypt-/);
      const pkcs8 = unwrapForTest(ws.dataDir, f);
      const key = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
      const d = Buffer.from((key.export({ format: "jwk" }) as { d: string }).d, "base64url");
      // Neither the PKCS#8 DER nor the private scalar appears in any encoding in the file.
      const raw = readFileSync(path);
      for (const secret of [pkcs8, d]) {
        expect(raw.includes(secret)).toBe(false);
        expect(text).not.toContain(secret.toString("base64"));
        expect(text).not.toContain(secret.toString("base64url"));
        expect(text).not.toContain(secret.toString("hex"));
      }
    }
    expect(statSync(join(ws.dataDir, "fleetca.db")).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(ws.dataDir, "kek.json"), "utf8"))).not.toHaveProperty("key");
  });

  it("fails start-up with a clear one-line message on a wrong passphrase", async () => {
    const r = await ws.cli(["serve"], { FLEETCA_PASSPHRASE: "not the passphrase" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^fleetca: wrong passphrase: cannot unlock the CA keys in .*\n$/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout + r.stderr).not.toContain("not the passphrase");
  });

  it("fails start-up with a clear message when the passphrase is missing", async () => {
    const r = await ws.cli(["serve"], { FLEETCA_PASSPHRASE: "" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^fleetca: CA keys in .* are protected by a passphrase: set FLEETCA_PASSPHRASE or passphraseFile\n$/);
  });

  it("reads the passphrase from passphraseFile, and refuses a world-readable one", async () => {
    const pf = join(ws.dir, "passphrase");
    writeFileSync(pf, PASSPHRASE + "\n", { mode: 0o644 });
    chmodSync(pf, 0o644);
    writeFileSync(ws.configPath, readFileSync(ws.configPath, "utf8") + `passphraseFile: ${pf}\n`);
    const loose = await ws.cli(["token", "create", "--sub", "a", "--san", "a.internal"], { FLEETCA_PASSPHRASE: "" });
    expect(loose.code).not.toBe(0);
    expect(loose.stderr).toMatch(/readable by group or others.*chmod 600/);
    chmodSync(pf, 0o600);
    const ok = await ws.cli(["token", "create", "--sub", "a", "--san", "a.internal", "--aud", "https://ca.internal/v1/sign"], { FLEETCA_PASSPHRASE: "" });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.trim().split(".")).toHaveLength(3);
  });

  it("detects a tampered key file", async () => {
    const f = readdirSync(join(ws.dataDir, "keys")).find((n) => n.startsWith("intermediate-"))!;
    const path = join(ws.dataDir, "keys", f);
    const original = readFileSync(path, "utf8");
    const w = JSON.parse(original);
    const ct = Buffer.from(w.key.ct, "base64");
    ct[10] = ct[10]! ^ 0x01;
    w.key.ct = ct.toString("base64");
    writeFileSync(path, JSON.stringify(w));
    try {
      const r = await ws.cli(["serve"]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/^fleetca: cannot decrypt .*: the file was altered\n$/);
    } finally {
      writeFileSync(path, original);
    }
  });
});
