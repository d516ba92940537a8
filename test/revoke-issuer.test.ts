import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { join } from "node:path";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { mtlsRequest } from "./harness/http.js";
import { openssl, opensslAll } from "./harness/openssl.js";
import { toPem } from "../src/x509/pem.js";
import { nginxConfig } from "./harness/nginx.js";
import { freePort } from "./harness/cert-agent.js";

const execFileAsync = promisify(execFile);

/**
 * `fleetca revoke-issuer KEYID --reason keyCompromise` against a running daemon (real processes,
 * openssl): the intermediate is on the root's CRL, a relying party checking the whole chain
 * refuses its leaves, the daemon issues from a fresh intermediate within 5 s and refuses the
 * revoked one's client certificates, and its fleet is due for renewal now.
 */

function keyIdOf(pem: string, which: "subject" | "authority" = "subject"): string {
  return openssl(["x509", "-noout", "-ext", `${which}KeyIdentifier`], { input: pem }).split("\n")[1]!.trim().replace(/^keyid:/, "").replace(/:/g, "").toLowerCase();
}

function serialOf(pem: string): string {
  return new X509Certificate(pem).serialNumber.toUpperCase();
}

async function intermediateOf(publicUrl: string): Promise<string> {
  return toPem(Buffer.from(await (await fetch(`${publicUrl}/intermediate.crt`)).arrayBuffer()), "CERTIFICATE");
}

/** Debian's nginx; `.ci/run` installs it when missing. */
const NGINX = "/usr/sbin/nginx";

/**
 * Runs nginx requiring client certificates under the roots with `crlsPath` as ssl_crl (CRL checks
 * for every CA of the chain), and answers the status each client gets: 200, or 400 for a client
 * certificate that fails verification (0 when the handshake failed outright).
 */
async function nginxVerdicts(ws: CaWorkspace, ca: CaClient, crlsPath: string, clients: Issued[]): Promise<{ codes: number[]; errorLog: string }> {
  const server = await ca.issue("nginx", ["localhost", "127.0.0.1"]);
  const dir = join(ws.dir, "nginx");
  mkdirSync(dir);
  writeFileSync(join(dir, "server.pem"), server.certificate + server.chain);
  const port = await freePort();
  writeFileSync(
    join(dir, "nginx.conf"),
    nginxConfig({
      dir,
      processModel: "master_process off;",
      workerConnections: 64,
      servers: `  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${dir}/server.pem;
    ssl_certificate_key ${server.keyPath};
    ssl_client_certificate ${ca.rootsPath};
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_crl ${crlsPath};
    location / { return 200 "hello\\n"; }
  }
`,
    }),
  );
  const nginx: ChildProcess = spawn(NGINX, ["-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], { stdio: ["ignore", "ignore", "ignore"] });
  try {
    const curl = async (c: Issued): Promise<number> => {
      const certAndChain = `${c.certPath}.with-chain.pem`;
      writeFileSync(certAndChain, c.certificate + c.chain);
      try {
        const r = await execFileAsync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca.rootsPath, "--cert", certAndChain, "--key", c.keyPath, `https://localhost:${port}/`]);
        return Number(r.stdout);
      } catch (e) {
        return Number((e as { stdout?: string }).stdout ?? 0);
      }
    };
    await eventually(10_000, "nginx listens", () => curl(clients.at(-1)!), (code) => code !== 0);
    const codes: number[] = [];
    for (const c of clients) codes.push(await curl(c));
    return { codes, errorLog: readFileSync(join(dir, "error.log"), "utf8") };
  } finally {
    nginx.kill("SIGTERM");
  }
}

describe("fleetca revoke-issuer (kill switch) while the daemon runs", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  }, 60_000);
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("refuses an unknown key id, a root, and a leaf-only reason with one line each", async () => {
    const unknown = await ws.cli(["revoke-issuer", "00ff", "--reason", "keyCompromise"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^fleetca: no intermediate with key id "00ff" \(known: [0-9a-f]{40}\)\n$/);
    const rootKeyId = keyIdOf(ca.roots);
    const root = await ws.cli(["revoke-issuer", rootKeyId, "--reason", "keyCompromise"]);
    expect(root.stderr).toBe(`fleetca: ${rootKeyId} is a root; revoke-issuer revokes an intermediate on its root's CRL\n`);
    const reason = await ws.cli(["revoke-issuer", keyIdOf(ca.intermediatePem), "--reason", "certificateHold"]);
    expect(reason.code).toBe(1);
    expect(reason.stderr).toMatch(/^fleetca: --reason: unknown or unsupported reason "certificateHold"/);
    expect(await intermediateOf(d.publicUrl)).toBe(ca.intermediatePem);
  });

  it("puts the intermediate on the root CRL, stops its issuance and client certs, activates a fresh one, pulls its fleet's windows to now", async () => {
    const compromised = ca.intermediatePem;
    const compromisedPath = join(ws.dir, "compromised.pem");
    writeFileSync(compromisedPath, compromised);
    const compromisedKeyId = keyIdOf(compromised);
    const victims: Issued[] = [await ca.issue("victim-1"), await ca.issue("victim-2")];

    const r = await ws.cli(["revoke-issuer", compromisedKeyId, "--reason", "keyCompromise"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^revoked intermediate ${compromisedKeyId} at \\S+ \\(keyCompromise\\): on root CRL #2 of ${keyIdOf(ca.roots)}\\n`));
    const fresh = /new intermediate key id: ([0-9a-f]{40}) \(issuing now\)/.exec(r.stdout)?.[1];
    expect(fresh).toBeDefined();
    // The two victims and the API's own serving certificate.
    expect(r.stdout).toMatch(/affected: 3 live certificates, due for renewal now/);

    // Within 5 s: issuance from the fresh intermediate.
    const { seen: freshPem } = await eventually(5_000, "/intermediate.crt serves the fresh intermediate", () => intermediateOf(d.publicUrl), (p) => p !== compromised);
    expect(keyIdOf(freshPem)).toBe(fresh);
    await ca.init();
    const after = await ca.issue("after-kill");
    expect(after.chain).toBe(freshPem);

    // The compromised intermediate's certificates renew onto the fresh one (the holder proves the
    // key of a certificate the inventory holds byte for byte; no new token needed), which is how
    // the fleet moves once its windows are pulled to now.
    const moved = await ca.renew(victims[0]!.identity);
    expect(moved.status, moved.raw).toBe(201);
    expect(moved.body.chain).toBe(freshPem);
    expect(keyIdOf(moved.body.certificate as string, "authority")).toBe(fresh);

    // Its fleet is due now (RFC 9773 renewalInfo).
    const info = await mtlsRequest(`${d.apiUrl}/v1/renewal-info/${victims[1]!.serial}`, ca.roots, { method: "GET" });
    expect(info.status, info.raw).toBe(200);
    const w = info.body.suggestedWindow as { start: string; end: string };
    expect(new Date(w.start).getTime()).toBeLessThanOrEqual(Date.now());
    expect(new Date(w.end).getTime()).toBeLessThanOrEqual(Date.now() + 61_000);

    // The root's CRL (served within 5 s) lists the compromised intermediate's serial, reason keyCompromise.
    const rootCrlPath = join(ws.dir, "root.crl");
    const { seen: rootCrlText } = await eventually(
      5_000,
      "the root CRL lists the compromised intermediate",
      async () => {
        writeFileSync(rootCrlPath, Buffer.from(await (await fetch(`${d.publicUrl}/crl/${keyIdOf(ca.roots)}`)).arrayBuffer()));
        return openssl(["crl", "-inform", "DER", "-in", rootCrlPath, "-noout", "-text"]);
      },
      (t) => t.toUpperCase().includes(serialOf(compromised)),
    );
    expect(rootCrlText).toMatch(/Key Compromise/);

    // A relying party checking the whole chain with /crls.pem (root + intermediates' CRLs, as
    // nginx's ssl_crl takes them) refuses the compromised intermediate's leaves, accepts the fresh one's.
    const crlsPath = join(ws.dir, "crls.pem");
    writeFileSync(crlsPath, await (await fetch(`${d.publicUrl}/crls.pem`)).text());
    const verify = (c: Issued, untrusted: string) => opensslAll(["verify", "-crl_check_all", "-CRLfile", crlsPath, "-CAfile", ca.rootsPath, "-untrusted", untrusted, c.certPath]);
    const victim = verify(victims[0]!, compromisedPath);
    expect(victim.code).not.toBe(0);
    expect(victim.out).toMatch(/error 23 at 1 depth lookup: certificate revoked/);
    expect(verify(after, ca.intermediatePath)).toEqual({ code: 0, out: `${after.certPath}: OK\n` });

    // nginx with ssl_crl = /crls.pem: the compromised intermediate's leaf (not itself revoked) is
    // refused, the fresh intermediate's accepted.
    const status = await nginxVerdicts(ws, ca, crlsPath, [victims[1]!, after]);
    expect(status.codes).toEqual([400, 200]);
    expect(status.errorLog).toMatch(/client SSL certificate verify error: \(23:certificate revoked\)/);

    // A second kill of the same intermediate is refused, once, with its time.
    const again = await ws.cli(["revoke-issuer", compromisedKeyId, "--reason", "keyCompromise"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(new RegExp(`^fleetca: intermediate ${compromisedKeyId} was already revoked at \\S+\\n$`));
  });
});
