import { request } from "node:https";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FleetcaDaemon, FLEETCA, benchEnv } from "./fleetca-daemon.mjs";
import { runOk, sleep } from "./processes.mjs";
import { makeTempDir } from "./cleanup.mjs";

/** Issued through the real flow; the OCSP jobs ask about the first. "A few" is enough: the hot path is one CertID. */
const CERTS = 3;
/** How long the fresh daemon sits idle before rss_idle_mb is read. */
const IDLE_MS = 2_000;

/**
 * The shared fixture of the OCSP jobs: a fresh CA in a temp dataDir, its daemon running, a few
 * certificates issued the way a host gets them (openssl CSR → `fleetca token create` → POST
 * /v1/sign over HTTPS, trusting /roots.pem only), and the OCSP request bodies built by openssl.
 */
export async function createFleet(log, daemonOptions = {}) {
  const dir = makeTempDir("fleet");
  const daemon = await FleetcaDaemon.start(dir, daemonOptions);
  await sleep(IDLE_MS);
  const idleRssKb = daemon.memoryKb();
  const roots = await fetchText(`${daemon.publicUrl}/roots.pem`);
  writeFileSync(join(dir, "roots.pem"), roots);
  const certs = [];
  for (let i = 0; i < CERTS; i++) certs.push(await issue(dir, daemon, roots, `bench-${i}.internal`, join(dir, `cert-${i}.pem`)));
  writeFileSync(join(dir, "chain.pem"), certs[0].chain);
  const reqNoNonce = join(dir, "ocsp-req-no-nonce.der");
  const reqNonce = join(dir, "ocsp-req-nonce.der");
  const cert0 = join(dir, "cert-0.pem");
  await runOk("openssl", ["ocsp", "-issuer", join(dir, "chain.pem"), "-cert", cert0, "-no_nonce", "-reqout", reqNoNonce], { timeoutMs: 10_000 });
  await runOk("openssl", ["ocsp", "-issuer", join(dir, "chain.pem"), "-cert", cert0, "-reqout", reqNonce], { timeoutMs: 10_000 });
  log(`fleet: daemon pid ${daemon.pid}, ${certs.length} certificates issued, serial ${certs[0].serial}`);
  return { dir, daemon, idleRssKb, certs, cert0, chain: join(dir, "chain.pem"), roots: join(dir, "roots.pem"), reqNoNonce, reqNonce };
}

async function issue(dir, daemon, roots, name, certPath) {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  await runOk("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`, "-addext", `subjectAltName=DNS:${name}`], { timeoutMs: 10_000 });
  const tok = await runOk(process.execPath, [FLEETCA, "token", "create", "--sub", name, "--san", name, "--config", daemon.config], { env: benchEnv(dir), timeoutMs: 30_000 });
  const body = JSON.stringify({ csr: readFileSync(csr, "utf8") });
  const res = await httpsJson(`${daemon.apiUrl}/v1/sign`, body, { Authorization: `Bearer ${tok.stdout.trim()}` }, roots);
  if (res.status !== 201) throw new Error(`POST /v1/sign answered ${res.status}: ${res.text.slice(0, 200)}`);
  const j = JSON.parse(res.text);
  writeFileSync(certPath, j.certificate);
  return { serial: j.serial, certificate: j.certificate, chain: j.chain };
}

function httpsJson(url, body, headers, ca) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "POST", ca, timeout: 20_000, headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), ...headers } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("timeout", () => req.destroy(new Error(`timeout: ${url}`)));
    req.on("error", reject);
    req.end(body);
  });
}

export async function fetchText(url) {
  const r = await fetch(url, { signal: AbortSignal.timeout(20_000) });
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return r.text();
}
