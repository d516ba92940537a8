import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrivateKey } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import { CaWorkspace, type CliResult, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { postApi, signBody } from "./harness/http.js";
import { makeCsr, opensslAsync } from "./harness/openssl.js";
import { Secret } from "../src/core/secret.js";
import { createLogger } from "../src/log/logger.js";

const PASSPHRASE = "correct horse battery staple 7f3a9c";

/** Every file under `dir`, recursively (the database, its WAL, wrapped keys, KEK parameters, CRLs, state). */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/** The forms a private key could be copied in: its PEM body (whole and line by line), its PKCS#8 DER, its raw private scalar. */
function keyForms(pem: string): { label: string; bytes: Buffer }[] {
  const lines = pem.split("\n").filter((l) => l && !l.startsWith("-----"));
  const key = createPrivateKey(pem);
  const der = key.export({ format: "der", type: "pkcs8" });
  const d = Buffer.from(key.export({ format: "jwk" }).d!, "base64url");
  return [
    { label: "PEM body", bytes: Buffer.from(lines.join("")) },
    ...lines.map((l, i) => ({ label: `PEM line ${i}`, bytes: Buffer.from(l) })),
    { label: "PKCS#8 DER", bytes: der },
    { label: "private scalar", bytes: d },
    { label: "private scalar (hex)", bytes: Buffer.from(d.toString("hex")) },
    { label: "private scalar (base64url)", bytes: Buffer.from(d.toString("base64url")) },
  ];
}

describe("secrets never leak: tokens, the passphrase and client keys appear in no log, CLI output or CA file", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  /** What the CLI printed, except `token create`'s stdout (the token is what it is for). */
  const cliOutputs: { what: string; text: string }[] = [];
  const tokens: string[] = [];
  const clientKeys: { name: string; pem: string }[] = [];
  let daemonOutput = "";
  let controls: Issued;

  const cli = async (args: string[], keepStdout = true): Promise<CliResult> => {
    const r = await ws.cli(args);
    cliOutputs.push({ what: `fleetca ${args[0]} stderr`, text: r.stderr });
    if (keepStdout) cliOutputs.push({ what: `fleetca ${args[0]} stdout`, text: r.stdout });
    return r;
  };
  const keep = (c: Issued) => {
    clientKeys.push({ name: c.keyPath, pem: readFileSync(c.keyPath, "utf8") });
    return c;
  };

  beforeAll(async () => {
    // Debug level: every line the daemon can write is written.
    ws = new CaWorkspace({ passphrase: PASSPHRASE, extraConfig: "log: { level: debug }\n" });
    expect((await cli(["init"])).code).toBe(0);
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();

    // A token from the CLI, spent; tokens minted in-process, spent; one replayed.
    const created = await cli(["token", "create", "--sub", "cli-host", "--san", "cli-host.internal"], false);
    expect(created.code, created.stderr).toBe(0);
    const cliToken = created.stdout.trim();
    tokens.push(cliToken);
    const cliCsr = makeCsr(ws.dir, "cli-host");
    clientKeys.push({ name: cliCsr.keyPath, pem: readFileSync(cliCsr.keyPath, "utf8") });
    const spent = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token: cliToken, body: signBody(cliCsr.csrPem) });
    expect(spent.status, spent.raw).toBe(201);
    const replayed = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token: cliToken, body: signBody(cliCsr.csrPem) });
    expect(replayed.status).toBe(401);

    const a = keep(await ca.issue("svc-a"));
    controls = a;
    const b = keep(await ca.issue("svc-b"));
    // Refused tokens: for another audience, and one whose signature was tampered with.
    const wrongAud = await ws.token("svc-c", ["svc-c.internal"], ["--aud", "https://elsewhere.example:8443/v1/sign"]);
    const tampered = (await ws.token("svc-d", ["svc-d.internal"])).replace(/.{8}$/, "AAAAAAAA");
    tokens.push(wrongAud, tampered);
    const csr = makeCsr(ws.dir, "refused");
    clientKeys.push({ name: csr.keyPath, pem: readFileSync(csr.keyPath, "utf8") });
    for (const t of [wrongAud, tampered]) expect((await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token: t, body: signBody(csr.csrPem) })).status).toBe(401);
    // ca.issue's own tokens are gone with its call: mint and spend two more here to know them.
    for (const name of ["svc-e", "svc-f"]) {
      const t = await ws.token(name, [`${name}.internal`]);
      tokens.push(t);
      const c = makeCsr(ws.dir, name);
      clientKeys.push({ name: c.keyPath, pem: readFileSync(c.keyPath, "utf8") });
      expect((await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token: t, body: signBody(c.csrPem) })).status).toBe(201);
    }

    // Renewal (same key, then a rekey with a new key), revocation over mTLS and by the CLI.
    const renewed = await ca.renew(a.identity);
    expect(renewed.status).toBe(201);
    // The rekey renews the successor: the first certificate is superseded now.
    const a2 = ca.keep("svc-a-2", renewed.body, a.keyPath);
    const rekey = makeCsr(ws.dir, "svc-a-rekey");
    clientKeys.push({ name: rekey.keyPath, pem: readFileSync(rekey.keyPath, "utf8") });
    expect((await ca.renew(a2.identity, { csr: rekey.csrPem })).status).toBe(201);
    expect((await ca.revoke(b.identity, { serial: b.serial })).status).toBe(200);
    const other = keep(await ca.issue("svc-g"));
    expect((await cli(["revoke", other.serial])).code).toBe(0);
    await eventually(5_000, "the CLI's revocation reaches OCSP", async () => {
      const r = await opensslAsync(["ocsp", "-timeout", "10", "-issuer", ca.intermediatePath, "-cert", other.certPath, "-url", `${d.publicUrl}/ocsp`, "-CAfile", ca.rootsPath]);
      return r.out;
    }, (out) => /: revoked/.test(out));
    expect((await fetch(`${d.publicUrl}/crl`)).status).toBe(200);
    expect((await fetch(`${d.publicUrl}/metrics`)).status).toBe(200);
    expect((await cli(["list", "--json"])).code).toBe(0);
    await d.stop();
    daemonOutput = d.output;
  }, 120_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  const haystacks = (): { what: string; bytes: Buffer }[] => [
    { what: "daemon stdout/stderr", bytes: Buffer.from(daemonOutput) },
    ...cliOutputs.map((o) => ({ what: o.what, bytes: Buffer.from(o.text) })),
    ...filesUnder(ws.dataDir).map((p) => ({ what: p, bytes: readFileSync(p) })),
  ];

  it("ran the whole flow and logged it (so the search below searched something)", () => {
    expect(daemonOutput).toMatch(/msg="certificate issued"/);
    expect(daemonOutput).toMatch(/msg="certificate renewed"/);
    expect(daemonOutput).toMatch(/msg="request refused".*reason=replayed/);
    expect(filesUnder(ws.dataDir).map((p) => p.slice(ws.dataDir.length + 1))).toContain("fleetca.db");
    expect(tokens).toHaveLength(5);
    // Positive controls: what is meant to be kept is found by the same byte search.
    const certDer = Buffer.from(controls.certificate.split("\n").filter((l) => l && !l.startsWith("-----")).join(""), "base64");
    expect(haystacks().some((h) => h.what.startsWith(join(ws.dataDir, "fleetca.db")) && h.bytes.includes(certDer))).toBe(true);
    expect(daemonOutput).toContain(controls.serial);
    expect(clientKeys.length).toBeGreaterThanOrEqual(7);
  });

  it("no token, whole or its signature, appears anywhere", () => {
    for (const t of tokens) {
      const signature = t.split(".")[2]!;
      expect(signature.length).toBeGreaterThan(40);
      for (const h of haystacks()) {
        expect(h.bytes.includes(t), `token in ${h.what}`).toBe(false);
        expect(h.bytes.includes(signature), `token signature in ${h.what}`).toBe(false);
      }
    }
  });

  it("the passphrase appears nowhere", () => {
    for (const h of haystacks()) expect(h.bytes.includes(PASSPHRASE), `passphrase in ${h.what}`).toBe(false);
  });

  it("no client private key appears anywhere, in any encoding", () => {
    for (const k of clientKeys) {
      for (const form of keyForms(k.pem)) {
        for (const h of haystacks()) expect(h.bytes.includes(form.bytes), `${k.name} (${form.label}) in ${h.what}`).toBe(false);
      }
    }
  });
});

describe("Secret and the logger's redaction", () => {
  it("a Secret prints [REDACTED] however it is turned into text", () => {
    const s = new Secret("hunter2-token-value");
    expect(String(s)).toBe("[REDACTED]");
    expect(`${s}`).toBe("[REDACTED]");
    expect(s + "").toBe("[REDACTED]");
    expect(JSON.stringify({ s })).toBe('{"s":"[REDACTED]"}');
    expect(inspect(s)).toBe("[REDACTED]");
    expect(inspect({ nested: { s } }, { depth: 5 })).not.toContain("hunter2");
    expect(Object.keys(s)).toEqual([]);
    expect(structuredClone(s)).not.toHaveProperty("value");
    expect(s.reveal()).toBe("hunter2-token-value");
  });

  it.each(["logfmt", "json"] as const)("censors tokens, authorization headers and key material in %s lines", (format) => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", format, write: (l) => void lines.push(l) });
    log.info(
      {
        token: "tok-top",
        authorization: "Bearer tok-auth",
        headers: { authorization: "Bearer tok-headers", cookie: "session=tok-cookie" },
        req: { headers: { authorization: "Bearer tok-req" }, token: "tok-nested" },
        key: "key-top",
        privateKey: "key-private",
        passphrase: "pass-top",
        worker: { key: "key-nested", passphrase: "pass-nested", password: "pass-word", secret: "sec-nested", jwt: "tok-jwt" },
        secret: new Secret("tok-secret"),
        serial: "0a1b2c",
      },
      "request",
    );
    const text = lines.join("");
    for (const leaked of ["tok-", "key-top", "key-private", "key-nested", "pass-", "sec-nested"]) expect(text).not.toContain(leaked);
    expect(text).toContain("0a1b2c");
    expect(text).toContain("[REDACTED]");
  });
});
