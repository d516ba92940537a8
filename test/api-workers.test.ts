import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { connect } from "node:tls";
import { join } from "node:path";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { workerPids } from "./harness/workers.js";
import { postApi, signBody } from "./harness/http.js";
import { makeCsr, opensslAsync, openssl } from "./harness/openssl.js";

/**
 * listen.apiWorkers: the API (sign, renew, revoke) served by worker processes on the shared
 * database, the primary keeping the background work. Real daemon, real workers.
 */
const WORKERS = 2;


/** The serial of the API's serving certificate, on a new connection. */
function servingSerial(apiUrl: string, roots: string): Promise<string> {
  const u = new URL(apiUrl);
  return new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port), servername: "localhost", ca: roots }, () => {
      const serial = s.getPeerCertificate().serialNumber.toLowerCase();
      s.end();
      resolve(serial);
    });
    s.on("error", reject);
  });
}

describe("API workers (listen.apiWorkers: 2, publicWorkers: 2): issuance, renewal and revocation on every core", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  /** /v1/sign on a new connection each time (node:cluster hands each to the next worker). */
  const sign = async (name: string): Promise<Issued> => {
    const token = await ws.token(name, [`${name}.internal`]);
    const csr = makeCsr(ws.dir, name);
    const r = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem), headers: { connection: "close" } });
    expect(r.status, r.raw).toBe(201);
    return ca.keep(name, r.body, csr.keyPath);
  };

  beforeAll(async () => {
    ws = new CaWorkspace({ passphrase: "api-workers-test-passphrase", listen: `publicWorkers: ${WORKERS}, apiWorkers: ${WORKERS}` });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  });

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("issues from both workers: every certificate verifies, and each worker signed some", async () => {
    expect(d.output).toMatch(/msg="api listening" url=\S+ workers=2/);
    expect(workerPids(d.child.pid!)).toHaveLength(WORKERS);
    const issued: Issued[] = [];
    for (let i = 0; i < 8; i++) issued.push(await sign(`w${i}`));
    expect(new Set(issued.map((c) => c.serial)).size).toBe(8);
    const out = openssl(["verify", "-CAfile", ca.rootsPath, "-untrusted", ca.intermediatePath, ...issued.map((c) => c.certPath)]);
    expect(out.match(/: OK$/gm)).toHaveLength(8);
    const byWorker = new Set([...d.output.matchAll(/msg="certificate issued".*?worker=(\d+)|worker=(\d+).*?msg="certificate issued"/g)].map((m) => m[1] ?? m[2]));
    expect([...byWorker].sort()).toEqual(["0", "1"]);
    // A token spent through one worker is spent for all.
    const token = await ws.token("once", ["once.internal"]);
    const csr = makeCsr(ws.dir, "once");
    const first = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem), headers: { connection: "close" } });
    const again = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem), headers: { connection: "close" } });
    expect(first.status).toBe(201);
    expect(again.status).toBe(401);
    expect(again.raw).toMatch(/replayed/);
  });

  it("renews over mTLS and revokes through a worker; OCSP and the CRL say revoked within 5 s", async () => {
    const holder = await sign("holder");
    const renewed = await ca.renew(holder.identity);
    expect(renewed.status, renewed.raw).toBe(201);
    const next = ca.keep("holder2", renewed.body, holder.keyPath);
    const revoked = await ca.revoke(next.identity, { serial: next.serial, reason: "keyCompromise" });
    expect(revoked.status, revoked.raw).toBe(200);
    await eventually(5_000, "OCSP says revoked", async () => {
      const r = await opensslAsync(["ocsp", "-timeout", "5", "-issuer", ca.intermediatePath, "-cert", next.certPath, "-url", `${d.publicUrl}/ocsp`, "-CAfile", ca.rootsPath]);
      return r.out;
    }, (o) => /: revoked/.test(o));
    await eventually(5_000, "the CRL lists it", async () => {
      const der = Buffer.from(await (await fetch(`${d.publicUrl}/crl`)).arrayBuffer());
      const crlPath = join(ws.dir, "current.crl");
      writeFileSync(crlPath, der);
      return openssl(["crl", "-inform", "DER", "-in", crlPath, "-noout", "-text"]).toUpperCase();
    }, (t) => t.includes(next.serial.toUpperCase()));
  });

  it("replaces a killed API worker; issuance goes on", async () => {
    const [victim] = workerPids(d.child.pid!);
    process.kill(victim!, "SIGKILL");
    await eventually(15_000, "a replacement worker", async () => workerPids(d.child.pid!).filter((p) => p !== victim).length, (n) => n === WORKERS);
    await eventually(15_000, "the replacement started", async () => d.output, (o) => /worker started again/.test(o));
    for (let i = 0; i < 4; i++) await sign(`after-kill-${i}`);
  });
});

describe("API workers follow the serving certificate the primary renews", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;

  beforeAll(async () => {
    // maxTTL bounds the serving certificate's lifetime: renewed every ~8 s.
    ws = new CaWorkspace({ passphrase: "api-workers-test-passphrase", listen: "apiWorkers: 2", extraConfig: "issuance: { defaultTTL: 12s, maxTTL: 12s, minTTL: 5s }\n" });
    d = await ws.start();
  });

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("new connections to every worker get the renewed certificate", async () => {
    const roots = await (await fetch(`${d.publicUrl}/roots.pem`)).text();
    const first = await servingSerial(d.apiUrl, roots);
    await eventually(20_000, "a renewed serving certificate", async () => d.output, (o) => /api serving certificate renewed/.test(o));
    // The latest renewal (another may come every ~8 s) is what every new connection must get,
    // whichever worker round-robin hands it to.
    const latest = () => {
      const all = [...d.output.matchAll(/msg="api serving certificate renewed".*?serial=(\w+)|serial=(\w+).*?msg="api serving certificate renewed"/g)];
      const m = all[all.length - 1]!;
      return (m[1] ?? m[2])!.toLowerCase();
    };
    expect(latest()).not.toBe(first);
    let serial = "";
    await eventually(5_000, "both workers serve it", async () => {
      serial = latest();
      const seen: string[] = [];
      for (let i = 0; i < 6; i++) seen.push(await servingSerial(d.apiUrl, roots));
      return seen;
    }, (seen) => seen.every((s) => s === serial));
  });
});
