import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { get as httpsGet } from "node:https";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";
import { openssl, opensslAll } from "./harness/openssl.js";
import { agentWorkspace, rootFingerprint, runAgent } from "./harness/cert-agent.js";
import { allPem, toPem } from "../src/x509/pem.js";

/** GET over the API's TLS without verification: only the bytes matter here. */
function runAgentFetch(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpsGet(url, { rejectUnauthorized: false }, (res) => {
      let b = "";
      res.on("data", (c: Buffer) => (b += c.toString()));
      res.on("end", () => resolve(b));
    }).on("error", reject);
  });
}

function publicKeyOfCert(path: string): string {
  return openssl(["x509", "-in", path, "-noout", "-pubkey"]);
}
function publicKeyOfKey(path: string): string {
  return openssl(["pkey", "-in", path, "-pubout"]);
}

describe("cert-agent --once against a real daemon", () => {
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

  async function tokenFile(name: string, sans: string[]): Promise<string> {
    const path = join(ws.dir, `${name}.token`);
    writeFileSync(path, `${await ws.token(name, sans)}\n`);
    return path;
  }

  function args(out: string, tokenPath: string, sans: string[], extra: string[] = []): string[] {
    return ["--ca", d.apiUrl, "--root-fingerprint", fp, "--token-file", tokenPath, "--out", out, ...sans.flatMap((s) => ["--san", s]), "--once", ...extra];
  }

  it("serves /roots.pem on the API listener too (the bundle the agent pins)", async () => {
    const pub = await (await fetch(`${d.publicUrl}/roots.pem`)).text();
    const api = await runAgentFetch(`${d.apiUrl}/roots.pem`);
    expect(pub).toContain("BEGIN CERTIFICATE");
    expect(api).toBe(pub);
  });

  it("enrolls: the six files, key 0600, chain verifies, key matches cert, the requested SANs", async () => {
    const sans = ["web-1.internal", "10.0.0.7", "spiffe://example.org/web"];
    const out = join(ws.dir, "out-once");
    const log = join(ws.dir, "reload.log");
    const r = await runAgent(args(out, await tokenFile("web-1", sans), sans, ["--reload-cmd", `echo reloaded >> ${log}`]));
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/msg="issued"/);
    expect(r.stdout).not.toMatch(/ocsp fetch failed/);
    for (const f of ["key.pem", "cert.pem", "chain.pem", "fullchain.pem", "ca.pem", "ocsp.der"]) {
      expect(lstatSync(join(out, f)).isSymbolicLink(), f).toBe(true);
      expect(readlinkSync(join(out, f))).toBe(`..data/${f}`);
      expect(existsSync(join(out, f)), f).toBe(true);
    }
    expect(statSync(join(out, "key.pem")).mode & 0o777).toBe(0o600);
    const verify = openssl(["verify", "-x509_strict", "-CAfile", join(out, "ca.pem"), "-untrusted", join(out, "chain.pem"), join(out, "cert.pem")]);
    expect(verify.trim()).toBe(`${join(out, "cert.pem")}: OK`);
    // certbot's naming (SPEC): chain.pem the intermediates only, fullchain.pem the leaf then them.
    const chainDers = allPem(readFileSync(join(out, "chain.pem"), "utf8"), "CERTIFICATE");
    const fullDers = allPem(readFileSync(join(out, "fullchain.pem"), "utf8"), "CERTIFICATE");
    const leafDer = allPem(readFileSync(join(out, "cert.pem"), "utf8"), "CERTIFICATE")[0]!;
    expect(chainDers.some((d) => Buffer.from(d).equals(Buffer.from(leafDer)))).toBe(false);
    expect(fullDers.map((d) => Buffer.from(d).toString("hex"))).toEqual([leafDer, ...chainDers].map((d) => Buffer.from(d).toString("hex")));
    expect(publicKeyOfKey(join(out, "key.pem"))).toBe(publicKeyOfCert(join(out, "cert.pem")));
    const san = openssl(["x509", "-in", join(out, "cert.pem"), "-noout", "-ext", "subjectAltName"]);
    expect(san).toContain("DNS:web-1.internal");
    expect(san).toContain("IP Address:10.0.0.7");
    expect(san).toContain("URI:spiffe://example.org/web");
    // The stapled OCSP response is about this cert and says good.
    const issuerPath = join(ws.dir, "issuer.pem");
    writeFileSync(issuerPath, toPem(allPem(readFileSync(join(out, "chain.pem"), "utf8"), "CERTIFICATE")[0]!, "CERTIFICATE"));
    const o = opensslAll(["ocsp", "-respin", join(out, "ocsp.der"), "-issuer", issuerPath, "-cert", join(out, "cert.pem"), "-CAfile", join(out, "ca.pem"), "-no_nonce"]);
    expect(o.out).toMatch(/Response verify OK/);
    expect(o.out).toMatch(/cert\.pem: good/);
    expect(readFileSync(log, "utf8")).toBe("reloaded\n");
    // At most the current and the previous version directory, and no temp links.
    expect(readdirSync(out).filter((n) => n.startsWith("..") && n !== "..data").length).toBeLessThanOrEqual(2);
    expect(readdirSync(out).filter((n) => n.endsWith(".tmp") || n === "..data_tmp")).toEqual([]);
    expect(r.stdout + r.stderr).not.toContain("PRIVATE KEY");

    // A second --once renews the unexpired cert over mTLS (no token needed: the file is now used up),
    // with a new key and a new serial.
    const before = { serial: openssl(["x509", "-in", join(out, "cert.pem"), "-noout", "-serial"]), key: readFileSync(join(out, "key.pem"), "utf8") };
    expect(existsSync(join(out, "bundle.pem"))).toBe(false); // only with --bundle
    const r2 = await runAgent(args(out, join(ws.dir, "web-1.token"), sans, ["--reload-cmd", `echo reloaded >> ${log}`, "--bundle"]));
    expect(r2.code, r2.stderr + r2.stdout).toBe(0);
    expect(r2.stdout).toMatch(/msg="renewed"/);
    expect(openssl(["x509", "-in", join(out, "cert.pem"), "-noout", "-serial"])).not.toBe(before.serial);
    expect(readFileSync(join(out, "key.pem"), "utf8")).not.toBe(before.key);
    expect(publicKeyOfKey(join(out, "key.pem"))).toBe(publicKeyOfCert(join(out, "cert.pem")));
    expect(readFileSync(log, "utf8")).toBe("reloaded\nreloaded\n");
    expect(readdirSync(out).filter((n) => n.startsWith("..") && n !== "..data").length).toBeLessThanOrEqual(2);
    // --bundle: the key, then the leaf, then the intermediates, one 0600 file of the same set.
    expect(readlinkSync(join(out, "bundle.pem"))).toBe("..data/bundle.pem");
    expect(statSync(join(out, "bundle.pem")).mode & 0o777).toBe(0o600);
    const bundle = readFileSync(join(out, "bundle.pem"), "utf8");
    expect(bundle).toBe(readFileSync(join(out, "key.pem"), "utf8") + readFileSync(join(out, "fullchain.pem"), "utf8"));
    expect(bundle.indexOf("PRIVATE KEY")).toBeLessThan(bundle.indexOf("CERTIFICATE"));
    // Without --bundle again, the next set has none, and no link is left dangling.
    const r3 = await runAgent(args(out, join(ws.dir, "web-1.token"), sans));
    expect(r3.code, r3.stderr + r3.stdout).toBe(0);
    expect(() => lstatSync(join(out, "bundle.pem"))).toThrow(/ENOENT/);
  });

  it("refuses a wrong root fingerprint with one clear line and writes nothing", async () => {
    const out = join(ws.dir, "out-wrongfp");
    const bad = "AB:".repeat(31) + "AB";
    const a = args(out, await tokenFile("wrongfp", ["wrongfp.internal"]), ["wrongfp.internal"]);
    a[a.indexOf("--root-fingerprint") + 1] = bad;
    const r = await runAgent(a);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^cert-agent: root fingerprint mismatch/);
    expect(existsSync(out)).toBe(false);
  });

  it("refuses a malformed fingerprint and a missing token file before any request", async () => {
    const out = join(ws.dir, "out-bad");
    const a = args(out, join(ws.dir, "nope.token"), ["x.internal"]);
    let r = await runAgent(a);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^cert-agent: --token-file .* does not exist\n$/);
    a[a.indexOf("--root-fingerprint") + 1] = "not-hex";
    r = await runAgent(a);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^cert-agent: --root-fingerprint must be a SHA-256 fingerprint/);
    expect(existsSync(out)).toBe(false);
  });

  it("a used or bogus token: non-zero exit with the CA's reason, token never printed", async () => {
    const out = join(ws.dir, "out-used");
    const tok = await tokenFile("used", ["used.internal"]);
    const first = await runAgent(args(out, tok, ["used.internal"]));
    expect(first.code, first.stderr).toBe(0);
    const out2 = join(ws.dir, "out-used-2");
    const r = await runAgent(args(out2, tok, ["used.internal"]));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^cert-agent: enrollment \(\/v1\/sign\) refused by the CA \(HTTP 401\): unauthorized: replayed/);
    expect(r.stderr + r.stdout).not.toContain(readFileSync(tok, "utf8").trim());
    expect(existsSync(out2)).toBe(false);

    const bogus = join(ws.dir, "bogus.token");
    writeFileSync(bogus, "not.a.jwt\n");
    const r2 = await runAgent(args(join(ws.dir, "out-bogus"), bogus, ["x.internal"]));
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toMatch(/^cert-agent: enrollment \(\/v1\/sign\) refused by the CA \(HTTP 401\)/);
    expect(r2.stderr).not.toContain("not.a.jwt");
  });

  it("an unreachable CA in --once mode is a one-line error", async () => {
    const out = join(ws.dir, "out-unreach");
    const a = args(out, await tokenFile("unreach", ["u.internal"]), ["u.internal"]);
    a[a.indexOf("--ca") + 1] = "https://127.0.0.1:1";
    const r = await runAgent(a);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^cert-agent: cannot reach https:\/\/127\.0\.0\.1:1/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });
});
