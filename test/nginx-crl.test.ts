import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { nginxConfig } from "./harness/nginx.js";
import { promisify } from "node:util";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { opensslAsync } from "./harness/openssl.js";
import { allPem } from "../src/x509/pem.js";
import { parseCrl } from "../src/revocation/crl/crl-info.js";

const execFileAsync = promisify(execFile);
const ADMIN_SAN = "spiffe://fleet.test/admin";
/** Debian's nginx; `.ci/run` installs it when missing. */
const NGINX = "/usr/sbin/nginx";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/** curl with a client certificate: the HTTP status, or 0 when the handshake itself failed. */
async function curlStatus(url: string, caFile: string, client: Issued): Promise<number> {
  const certAndChain = `${client.certPath}.with-chain.pem`;
  writeFileSync(certAndChain, readFileSync(client.certPath, "utf8") + readFileSync(client.chainPath, "utf8"));
  try {
    const r = await execFileAsync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", caFile, "--cert", certAndChain, "--key", client.keyPath, url]);
    return Number(r.stdout);
  } catch (e) {
    return Number((e as { stdout?: string }).stdout ?? 0);
  }
}

describe("nginx with fleetca's roots, CRL bundle and OCSP stapling (real nginx, curl, openssl s_client)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  let nginx: ChildProcess | null = null;
  let nginxLog = "";
  let port = 0;
  let good: Issued;
  let revoked: Issued;

  beforeAll(async () => {
    ws = new CaWorkspace({ extraConfig: `admins: ["${ADMIN_SAN}"]\ncrl: { shards: 2 }\n` });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    const admin = await ca.issue("admin", [ADMIN_SAN], {}, ["--admin"]);
    const server = await ca.issue("nginx", ["localhost", "127.0.0.1"]);
    good = await ca.issue("good-client");
    revoked = await ca.issue("revoked-client");
    const r = await ca.revoke(admin.identity, { serial: revoked.serial, reason: "keyCompromise" });
    expect(r.status, r.raw).toBe(200);

    // What an operator downloads for nginx: the roots and every current CRL, once the revocation is in.
    const { seen: crls } = await eventually(
      5_000,
      "/crls.pem carries the revocation",
      async () => (await fetch(`${d.publicUrl}/crls.pem`)).text(),
      (pem) => {
        const crls = allPem(pem, "X509 CRL").map((der) => parseCrl(der));
        return crls.length === 4 && crls.some((c) => c.entries.some((e) => e.serial === revoked.serial)); // root, full, 2 partitions
      },
    );
    const dir = join(ws.dir, "nginx");
    mkdirSync(dir);
    writeFileSync(join(dir, "crls.pem"), crls);
    writeFileSync(join(dir, "server.pem"), readFileSync(server.certPath, "utf8") + readFileSync(server.chainPath, "utf8"));
    writeFileSync(join(dir, "trusted.pem"), ca.roots + ca.intermediatePem);
    port = await freePort();
    writeFileSync(
      join(dir, "nginx.conf"),
      nginxConfig({ dir, processModel: "master_process off;", workerConnections: 64, servers: `  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${dir}/server.pem;
    ssl_certificate_key ${server.keyPath};
    ssl_client_certificate ${ca.rootsPath};
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_crl ${dir}/crls.pem;
    ssl_stapling on;
    ssl_stapling_verify on;
    ssl_trusted_certificate ${dir}/trusted.pem;
    # The certificates name the config's publicUrl; this daemon listens on a test port.
    ssl_stapling_responder ${d.publicUrl}/ocsp;
    location / { return 200 "hello $ssl_client_s_dn\\n"; }
  }
` }),
    );
    nginx = spawn(NGINX, ["-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], { stdio: ["ignore", "pipe", "pipe"] });
    nginx.stderr!.on("data", (b: Buffer) => (nginxLog += b.toString()));
    await eventually(10_000, "nginx listens", () => curlStatus(`https://localhost:${port}/`, ca.rootsPath, good).catch(() => 0), (s) => s !== 0);
  }, 120_000);

  afterAll(async () => {
    nginx?.kill("SIGTERM");
    await d?.stop();
    ws?.remove();
  });

  it("accepts a good client certificate and refuses a revoked one (ssl_verify_client + ssl_crl = /crls.pem)", async () => {
    expect(await curlStatus(`https://localhost:${port}/`, ca.rootsPath, good), nginxLog).toBe(200);
    // nginx answers a client certificate that fails verification with 400 "The SSL certificate error".
    expect(await curlStatus(`https://localhost:${port}/`, ca.rootsPath, revoked)).toBe(400);
    expect(readFileSync(join(ws.dir, "nginx", "error.log"), "utf8")).toMatch(/client SSL certificate verify error: \(23:certificate revoked\)/);
  });

  it("staples fleetca's OCSP answer: s_client -status shows Cert Status: good", async () => {
    // nginx fetches the answer on the first handshake and staples it from then on.
    const { seen } = await eventually(
      10_000,
      "nginx staples an OCSP response",
      async () =>
        (
          await opensslAsync([
            "s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", "-status", "-CAfile", ca.rootsPath,
            "-cert", good.certPath, "-key", good.keyPath, "-cert_chain", good.chainPath,
          ])
        ).out,
      (out) => /OCSP Response Status: successful/.test(out),
    );
    expect(seen).toMatch(/Cert Status: good/);
    expect(seen).toMatch(/Verify return code: 0 \(ok\)/);
  });
});

