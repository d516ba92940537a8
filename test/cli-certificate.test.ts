import { createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaWorkspace, type CliResult, type DaemonProcess } from "./harness/fleetca-process.js";
import { fetchRoots } from "./harness/http.js";
import { opensslAsync } from "./harness/openssl.js";

/** `fleetca certificate`: key, CSR, token, POST /v1/sign and the four files, in one command. */
describe("fleetca certificate", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let rootsPath: string;

  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
    rootsPath = join(ws.dir, "roots.pem");
    writeFileSync(rootsPath, await fetchRoots(d.publicUrl));
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  const read = (dir: string, f: string) => readFileSync(join(dir, f), "utf8");
  const FILES = ["key.pem", "cert.pem", "chain.pem", "fullchain.pem"];
  const oneLine = (r: CliResult) => {
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/^fleetca: /);
  };

  /** The set is usable: verifies to the CA's roots, fullchain = cert + chain, key.pem holds the cert's key. */
  async function expectValidSet(dir: string): Promise<X509Certificate> {
    const v = await opensslAsync(["verify", "-CAfile", rootsPath, "-untrusted", join(dir, "chain.pem"), join(dir, "cert.pem")]);
    expect(v.code, v.out).toBe(0);
    expect(v.out).toContain(": OK");
    expect(read(dir, "fullchain.pem")).toBe(read(dir, "cert.pem") + read(dir, "chain.pem"));
    const cert = new X509Certificate(read(dir, "cert.pem"));
    const spki = (k: ReturnType<typeof createPublicKey>) => k.export({ type: "spki", format: "der" }).toString("hex");
    expect(spki(createPublicKey(read(dir, "key.pem")))).toBe(spki(cert.publicKey));
    expect(statSync(join(dir, "key.pem")).mode & 0o777).toBe(0o600);
    return cert;
  }

  it("end to end with a minted token: default ./NAME, the SANs asked for, a verifying chain, key.pem 0600", async () => {
    const r = await ws.cli(["certificate", "web-1.internal", "--san", "web-1.internal", "--san", "10.1.2.3", "--san", "spiffe://example.org/web-1"]);
    expect(r.code, r.stderr).toBe(0);
    const dir = join(ws.dir, "web-1.internal");
    expect(r.stdout).toMatch(/^web-1\.internal: serial [0-9a-f]+, valid until \d{4}-\d\d-\d\dT[\d:.]+Z, files in web-1\.internal\n$/);
    for (const f of FILES) expect(existsSync(join(dir, f)), f).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const cert = await expectValidSet(dir);
    expect(cert.subjectAltName?.split(", ").sort()).toEqual(["DNS:web-1.internal", "IP Address:10.1.2.3", "URI:spiffe://example.org/web-1"]);
    expect(new Date(cert.validTo).toISOString().slice(0, 19)).toBe(/valid until (\S+),/.exec(r.stdout)![1]!.slice(0, 19));
  });

  it("--key-type p384, ed25519 and rsa2048 each give a verifying certificate of that key type; NAME alone is the SAN", async () => {
    const want: Record<string, (c: X509Certificate) => void> = {
      p384: (c) => expect([c.publicKey.asymmetricKeyType, c.publicKey.asymmetricKeyDetails?.namedCurve]).toEqual(["ec", "secp384r1"]),
      ed25519: (c) => expect(c.publicKey.asymmetricKeyType).toBe("ed25519"),
      rsa2048: (c) => expect([c.publicKey.asymmetricKeyType, c.publicKey.asymmetricKeyDetails?.modulusLength]).toEqual(["rsa", 2048]),
    };
    for (const [keyType, check] of Object.entries(want)) {
      const name = `kt-${keyType}.internal`;
      const r = await ws.cli(["certificate", name, "--key-type", keyType]);
      expect(r.code, `${keyType}: ${r.stderr}`).toBe(0);
      const cert = await expectValidSet(join(ws.dir, name));
      check(cert);
      expect(cert.subjectAltName).toBe(`DNS:${name}`);
    }
    const bad = await ws.cli(["certificate", "kt-bad.internal", "--key-type", "dsa"]);
    oneLine(bad);
    expect(bad.stderr).toContain("--key-type");
  });

  it("--token-file: a given token is used; used again it is refused (unauthorized: replayed) and nothing is written", async () => {
    const token = await ws.token("tf.internal", ["tf.internal"]);
    const tokenFile = join(ws.dir, "tf.token");
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const first = await ws.cli(["certificate", "tf.internal", "--token-file", tokenFile, "--out", "tf-1"]);
    expect(first.code, first.stderr).toBe(0);
    await expectValidSet(join(ws.dir, "tf-1"));

    const again = await ws.cli(["certificate", "tf.internal", "--token-file", tokenFile, "--out", "tf-2"]);
    oneLine(again);
    expect(again.stderr).toMatch(/^fleetca: the CA refused the request: unauthorized: .*replayed/);
    expect(again.stderr + again.stdout).not.toContain(token);
    expect(existsSync(join(ws.dir, "tf-2"))).toBe(false);
  });

  it("refuses existing files without --force (unchanged, nothing spent) and replaces them with it", async () => {
    const first = await ws.cli(["certificate", "force.internal", "--out", "force"]);
    expect(first.code, first.stderr).toBe(0);
    const dir = join(ws.dir, "force");
    const before = Object.fromEntries(FILES.map((f) => [f, read(dir, f)]));
    const tokensBefore = ws.rowCounts().used_tokens;

    const refused = await ws.cli(["certificate", "force.internal", "--out", "force"]);
    oneLine(refused);
    expect(refused.stderr).toContain("--force");
    for (const f of FILES) expect(read(dir, f), f).toBe(before[f]);
    expect(ws.rowCounts().used_tokens).toBe(tokensBefore); // refused before a token was minted or sent

    const forced = await ws.cli(["certificate", "force.internal", "--out", "force", "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(read(dir, "key.pem")).not.toBe(before["key.pem"]);
    expect(read(dir, "cert.pem")).not.toBe(before["cert.pem"]);
    await expectValidSet(dir);
  });

  it("--json prints one object naming the serial, notAfter, SANs and files", async () => {
    const r = await ws.cli(["certificate", "json.internal", "--json", "--ttl", "2h"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    const j = JSON.parse(r.stdout) as { serial: string; notAfter: string; sans: string[]; files: Record<string, string> };
    const dir = join(ws.dir, "json.internal");
    expect(j.files).toEqual({ key: join(dir, "key.pem"), cert: join(dir, "cert.pem"), chain: join(dir, "chain.pem"), fullchain: join(dir, "fullchain.pem") });
    expect(j.sans).toEqual(["json.internal"]);
    const cert = await expectValidSet(dir);
    const strip = (s: string) => s.toLowerCase().replace(/^0+/, "");
    expect(strip(cert.serialNumber)).toBe(strip(j.serial));
    expect(Date.parse(j.notAfter)).toBe(Date.parse(cert.validTo));
    // --ttl reached the CA: about two hours, not the 24 h default.
    expect(Date.parse(j.notAfter) - Date.now()).toBeLessThan(2 * 3600_000 + 60_000);
  });

  it("a SAN the token does not allow: forbidden, nothing written", async () => {
    const tokenFile = join(ws.dir, "narrow.token");
    writeFileSync(tokenFile, await ws.token("narrow.internal", ["narrow.internal"]), { mode: 0o600 });
    const r = await ws.cli(["certificate", "narrow.internal", "--san", "narrow.internal", "--san", "other.internal", "--token-file", tokenFile]);
    oneLine(r);
    expect(r.stderr).toMatch(/^fleetca: the CA refused the request: forbidden: /);
    expect(existsSync(join(ws.dir, "narrow.internal"))).toBe(false);
  });

  it("an unreachable CA or one not chaining to the local roots is one line naming the URL; --ca without a local CA database is refused", async () => {
    const url = "https://127.0.0.1:1";
    const r = await ws.cli(["certificate", "gone.internal", "--ca", url]);
    oneLine(r);
    expect(r.stderr).toContain(`${url}/v1/sign`);
    expect(existsSync(join(ws.dir, "gone.internal"))).toBe(false);

    // Another CA's API: its serving certificate does not chain to this CA's roots, so TLS fails
    // before the request (and its token) is sent.
    const other = new CaWorkspace();
    const od = await other.start();
    try {
      const before = other.rowCounts();
      const imp = await ws.cli(["certificate", "imp.internal", "--ca", od.apiUrl]);
      oneLine(imp);
      expect(imp.stderr).toMatch(new RegExp(`^fleetca: cannot reach the CA at ${od.apiUrl}/v1/sign: .*(self[- ]signed|unable to (verify|get))`));
      expect(other.rowCounts()).toEqual(before);
      expect(existsSync(join(ws.dir, "imp.internal"))).toBe(false);
    } finally {
      await od.stop();
      other.remove();
    }

    const empty = new CaWorkspace();
    try {
      const e = await empty.cli(["certificate", "x.internal", "--ca", d.apiUrl, "--token", "not-a-real-token"]);
      oneLine(e);
      expect(e.stderr).toContain("--ca");
      expect(e.stderr).not.toContain("not-a-real-token");
      expect(existsSync(join(empty.dir, "x.internal"))).toBe(false);
    } finally {
      empty.remove();
    }
  });

  it("a wrong passphrase gives the one line `token create` gives", async () => {
    const locked = new CaWorkspace({ passphrase: "correct horse battery staple" });
    try {
      expect((await locked.cli(["init"])).code).toBe(0);
      const wrong = { FLEETCA_PASSPHRASE: "wrong" };
      const viaToken = await locked.cli(["token", "create", "--sub", "p.internal", "--san", "p.internal", "--aud", "https://127.0.0.1:9/v1/sign"], wrong);
      const viaCert = await locked.cli(["certificate", "p.internal", "--ca", "https://127.0.0.1:9"], wrong);
      oneLine(viaToken);
      oneLine(viaCert);
      expect(viaCert.stderr).toBe(viaToken.stderr);
      expect(existsSync(join(locked.dir, "p.internal"))).toBe(false);
    } finally {
      locked.remove();
    }
  });
});
