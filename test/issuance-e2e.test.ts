import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as tls from "node:tls";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { makeCsr, openssl } from "./harness/openssl.js";
import { fetchRoots, postApi, signBody } from "./harness/http.js";

/**
 * The issue's headline path: a newcomer's CA, a key + CSR from `openssl req`, a token from the
 * real CLI, submission over HTTPS trusting /roots.pem, and OpenSSL accepting the result.
 */
describe("issuance end to end (real daemon, openssl, node:tls)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let roots: string;
  const tokens: string[] = [];

  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
    roots = await fetchRoots(d.publicUrl);
    writeFileSync(join(ws.dir, "roots.pem"), roots);
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  async function issue(name: string, sans: string[], csrSans: string[], cn?: string) {
    const token = await ws.token(name, sans);
    tokens.push(token);
    const csr = makeCsr(ws.dir, name, { cn, sans: csrSans });
    const r = await postApi(`${d.apiUrl}/v1/sign`, roots, { token, body: signBody(csr.csrPem) });
    expect(r.status, r.raw).toBe(201);
    const certPath = join(ws.dir, `${name}.crt`);
    const chainPath = join(ws.dir, `${name}.chain.pem`);
    writeFileSync(certPath, r.body.certificate);
    writeFileSync(chainPath, r.body.chain);
    return { ...r.body, certPath, chainPath, keyPath: csr.keyPath, token };
  }

  it("issues a certificate that openssl verifies for sslserver and sslclient", async () => {
    const c = await issue("web-1", ["web-1.internal", "10.0.0.7"], ["DNS:web-1.internal", "IP:10.0.0.7"], "web-1.internal");
    for (const purpose of ["sslserver", "sslclient"]) {
      const out = openssl(["verify", "-x509_strict", "-purpose", purpose, "-CAfile", join(ws.dir, "roots.pem"), "-untrusted", c.chainPath, c.certPath]);
      expect(out.trim()).toBe(`${c.certPath}: OK`);
    }
    // SPEC: serial is lower-case hex as `openssl x509 -serial` prints it.
    const serial = openssl(["x509", "-in", c.certPath, "-noout", "-serial"]).trim();
    expect(c.serial).toBe(serial.replace(/^serial=/, "").toLowerCase());
    expect(c.serial).toMatch(/^[0-9a-f]{32}$/);
  });

  it("follows the leaf profile (openssl x509 -text)", async () => {
    const c = await issue("api-2", ["api-2.internal", "spiffe://example.org/ns/prod/sa/api"], [], undefined);
    const text = openssl(["x509", "-in", c.certPath, "-noout", "-text"]);
    expect(text).toMatch(/Subject: CN\s?=\s?api-2\.internal/);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/Extended Key Usage: \s*\n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toMatch(/Subject Alternative Name: \s*\n\s+DNS:api-2\.internal, URI:spiffe:\/\/example\.org\/ns\/prod\/sa\/api/);
    expect(text).toContain("X509v3 Subject Key Identifier");
    expect(text).toContain("X509v3 Authority Key Identifier");
    const intermediateSki = openssl(["x509", "-in", c.chainPath, "-noout", "-ext", "subjectKeyIdentifier"]).split("\n")[1]!.trim();
    expect(text).toContain(intermediateSki);
    // No publicUrl in the config: the URLs follow listen.public, here the port the daemon chose.
    expect(text).toContain(`URI:${d.publicUrl}/crl/${intermediateSki.replace(/:/g, "").toLowerCase()}`);
    expect(text).toContain(`OCSP - URI:${d.publicUrl}/ocsp`);
    expect(text).toContain(`CA Issuers - URI:${d.publicUrl}/intermediate.crt`);
    // notBefore backdated 1 min, lifetime = default 24 h.
    const nb = Date.parse(c.notBefore);
    const na = Date.parse(c.notAfter);
    expect(Date.now() - nb).toBeGreaterThan(50_000);
    expect(Date.now() - nb).toBeLessThan(120_000);
    expect(na - nb).toBeGreaterThan(24 * 3600_000);
    expect(na - nb).toBeLessThanOrEqual(24 * 3600_000 + 61_000);
  });

  it("makes the subject empty and the SAN critical when there is no DNS name", async () => {
    const c = await issue("spiffe-only", ["spiffe://example.org/ns/a/sa/b"], ["URI:spiffe://example.org/ns/a/sa/b"]);
    const text = openssl(["x509", "-in", c.certPath, "-noout", "-text"]);
    expect(text).toMatch(/Subject:\s*\n/);
    expect(text).toMatch(/Subject Alternative Name: critical/);
    openssl(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", join(ws.dir, "roots.pem"), "-untrusted", c.chainPath, c.certPath]);
  });

  it("clamps the requested ttl to issuance.maxTTL", async () => {
    const token = await ws.token("ttl", ["ttl.internal"]);
    tokens.push(token);
    const csr = makeCsr(ws.dir, "ttl", { cn: "ttl.internal" });
    const r = await postApi(`${d.apiUrl}/v1/sign`, roots, { token, body: signBody(csr.csrPem, { ttl: "1000h" }) });
    expect(r.status).toBe(201);
    const life = Date.parse(r.body.notAfter) - Date.parse(r.body.notBefore);
    expect(life).toBeLessThanOrEqual(168 * 3600_000 + 61_000);
    expect(life).toBeGreaterThan(167 * 3600_000);
  });

  it("returns the same certificate for a retry with the same Idempotency-Key, and issues once", async () => {
    const token = await ws.token("idem", ["idem.internal"]);
    tokens.push(token);
    const csr = makeCsr(ws.dir, "idem", { cn: "idem.internal" });
    const headers = { "idempotency-key": "req-7f3a" };
    const first = await postApi(`${d.apiUrl}/v1/sign`, roots, { token, body: signBody(csr.csrPem), headers });
    expect(first.status).toBe(201);
    const before = ws.rowCounts();
    const retry = await postApi(`${d.apiUrl}/v1/sign`, roots, { token, body: signBody(csr.csrPem), headers });
    expect(retry.status).toBe(201);
    expect(retry.body.serial).toBe(first.body.serial);
    expect(retry.body.certificate).toBe(first.body.certificate);
    expect(ws.rowCounts()).toEqual(before);
    // The same key with a different CSR is not a retry (SPEC: 409 conflict).
    const other = makeCsr(ws.dir, "idem2", { cn: "idem.internal" });
    const clash = await postApi(`${d.apiUrl}/v1/sign`, roots, { token, body: signBody(other.csrPem), headers });
    expect(clash.status).toBe(409);
    expect(clash.body.error).toBe("conflict");
    // Without the key, the used token is a replay.
    const replay = await postApi(`${d.apiUrl}/v1/sign`, roots, { token, body: signBody(csr.csrPem) });
    expect(replay.status).toBe(401);
    expect(replay.body.message).toMatch(/^replayed/);
  });

  it("answers concurrent retries with one Idempotency-Key with the same certificate, never replayed, and stores one", async () => {
    for (let round = 0; round < 5; round++) {
      const token = await ws.token(`idem-race-${round}`, ["idem-race.internal"]);
      tokens.push(token);
      const csr = makeCsr(ws.dir, `idem-race-${round}`, { cn: "idem-race.internal" });
      const headers = { "idempotency-key": `race-${round}` };
      const before = ws.rowCounts();
      const answers = await Promise.all(Array.from({ length: 8 }, () => postApi(`${d.apiUrl}/v1/sign`, roots, { token, body: signBody(csr.csrPem), headers })));
      expect(answers.map((a) => a.status), `round ${round}: ${JSON.stringify(answers.map((a) => a.body))}`).toEqual(Array(8).fill(201));
      expect(new Set(answers.map((a) => a.body.serial)).size, `round ${round}`).toBe(1);
      const after = ws.rowCounts();
      expect(after.certificates, `round ${round}`).toBe(before.certificates! + 1);
    }
  });

  it("lets two endpoints with issued certificates complete an mTLS handshake", async () => {
    const server = await issue("mtls-server", ["mtls-server.internal", "127.0.0.1"], ["DNS:mtls-server.internal", "IP:127.0.0.1"], "mtls-server.internal");
    const client = await issue("mtls-client", ["spiffe://example.org/ns/prod/sa/client"], []);
    const fullChain = (c: { certPath: string; chainPath: string }) => readFileSync(c.certPath, "utf8") + readFileSync(c.chainPath, "utf8");
    const srv = tls.createServer({
      key: readFileSync(server.keyPath),
      cert: fullChain(server),
      ca: roots,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
    });
    const peerSeen = new Promise<string>((resolve) =>
      srv.on("secureConnection", (s) => {
        resolve(s.getPeerCertificate().subjectaltname ?? "");
        s.end("hello over mTLS");
      }),
    );
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    const received = await new Promise<string>((resolve, reject) => {
      const sock = tls.connect({ host: "127.0.0.1", port, servername: "mtls-server.internal", key: readFileSync(client.keyPath), cert: fullChain(client), ca: roots });
      let data = "";
      sock.on("data", (b) => (data += b));
      sock.on("end", () => resolve(data));
      sock.on("error", reject);
    });
    expect(received).toBe("hello over mTLS");
    expect(await peerSeen).toBe("URI:spiffe://example.org/ns/prod/sa/client");

    // A client without a certificate is refused by the same server.
    const refused = await new Promise<boolean>((resolve) => {
      const sock = tls.connect({ host: "127.0.0.1", port, servername: "mtls-server.internal", ca: roots });
      sock.on("data", () => resolve(false));
      sock.on("error", () => resolve(true));
      sock.on("end", () => resolve(true));
    });
    expect(refused).toBe(true);
    srv.close();
  });

  it("serves its own API certificate from the intermediate and the public endpoints", async () => {
    const health = await fetch(`${d.publicUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const inter = await fetch(`${d.publicUrl}/intermediate.crt`);
    expect(inter.headers.get("content-type")).toContain("application/pkix-cert");
    const der = Buffer.from(await inter.arrayBuffer());
    writeFileSync(join(ws.dir, "intermediate.der"), der);
    const text = openssl(["x509", "-inform", "DER", "-in", join(ws.dir, "intermediate.der"), "-noout", "-text"]);
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    const root = openssl(["x509", "-in", join(ws.dir, "roots.pem"), "-noout", "-text"]);
    expect(root).toMatch(/CA:TRUE, pathlen:1/);
    expect(root).toMatch(/Certificate Sign, CRL Sign/);
    // The API listener's serving cert chains to the same root (postApi trusts only roots.pem).
    const peer = await new Promise<tls.PeerCertificate>((resolve, reject) => {
      const u = new URL(d.apiUrl);
      const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: roots, servername: "localhost" }, () => {
        resolve(s.getPeerCertificate());
        s.end();
      });
      s.on("error", reject);
    });
    expect(peer.subjectaltname).toContain("DNS:localhost");
    expect(peer.subjectaltname).toContain("IP Address:127.0.0.1");
  });

  it("never writes a token or a private key to its logs", async () => {
    expect(tokens.length).toBeGreaterThan(3);
    for (const t of tokens) {
      expect(d.output).not.toContain(t);
      expect(d.output).not.toContain(t.split(".")[2]);
    }
    expect(d.output).not.toMatch(/PRIVATE KEY/);
    expect(d.output).toMatch(/msg="certificate issued"/);
  });
});
