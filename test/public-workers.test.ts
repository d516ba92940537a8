import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Agent, get as httpGet } from "node:http";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { workerPids } from "./harness/workers.js";
import { opensslAsync } from "./harness/openssl.js";
import { conditionalGetStatus } from "./harness/http.js";
import { parseCrl } from "../src/revocation/crl/crl-info.js";
import { WORKER_SEMI_SPACE_MB, workerExecArgv } from "../src/cli/public-workers.js";

const ADMIN_SAN = "spiffe://fleet.test/admin";
const WORKERS = 2;
/**
 * crl.streamAbove: every CRL here with an entry (~300 octets and more) is served by the workers
 * from the database, a chunk per read, rather than from memory; the empty ones are held.
 */
const STREAM_ABOVE = 300;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("public workers (listen.publicWorkers: 2): every worker serves the same OCSP and CRL answers, follows revocations, and dies with the primary", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  let admin: Issued;
  let cert: Issued;

  /** One `openssl ocsp` run: a new connection each, so node:cluster hands successive runs to each worker in turn. */
  const ocsp = (subject: Issued, extra: string[] = []) =>
    opensslAsync(["ocsp", "-timeout", "10", ...extra, "-issuer", ca.intermediatePath, "-cert", subject.certPath, "-url", `${d.publicUrl}/ocsp`, "-CAfile", ca.rootsPath]);
  /** `runs` answers in a row (over both workers), each verified against the roots: the statuses seen. */
  const statuses = async (subject: Issued, runs: number, extra: string[] = []) => {
    const out: string[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await ocsp(subject, extra);
      expect(r.out).toContain("Response verify OK");
      out.push(/: (good|revoked|unknown)/.exec(r.out)?.[1] ?? `no status: ${r.out}`);
    }
    return out;
  };

  beforeAll(async () => {
    ws = new CaWorkspace({ passphrase: "workers-test-passphrase", listen: `publicWorkers: ${WORKERS}`, extraConfig: `admins: ["${ADMIN_SAN}"]\ncrl: { shards: 2, streamAbove: ${STREAM_ABOVE} }\n` });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    admin = await ca.issue("admin", [ADMIN_SAN], {}, ["--admin"]);
    cert = await ca.issue("svc");
  });

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("runs the configured number of workers, which serve roots, CRLs and /healthz", async () => {
    expect(d.output).toMatch(/msg="public listening" url=\S+ workers=2/);
    expect(workerPids(d.child.pid!)).toHaveLength(WORKERS);
    // Each worker runs with the young generation capped (workerExecArgv): its idle memory.
    for (const pid of workerPids(d.child.pid!)) {
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toContain(`--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`);
    }
    for (let i = 0; i < 2 * WORKERS; i++) {
      const h = await fetch(`${d.publicUrl}/healthz`, { headers: { connection: "close" } });
      expect(h.status).toBe(200);
      expect(await h.json()).toEqual({ status: "ok" });
    }
    expect((await fetch(`${d.publicUrl}/roots.pem`)).status).toBe(200);
    const crl = parseCrl(Buffer.from(await (await fetch(`${d.publicUrl}/crl`)).arrayBuffer()));
    expect(crl.entries).toEqual([]);
    expect((await fetch(`${d.publicUrl}/crl/00/1`)).status).toBe(404);
  });

  it("answers OCSP from every worker, pre-signed and with a nonce (signed by the worker), and a revocation reaches all of them within 5 s", async () => {
    expect(await statuses(cert, 2 * WORKERS)).toEqual(Array(2 * WORKERS).fill("good"));
    expect(await statuses(cert, 2 * WORKERS, ["-no_nonce"])).toEqual(Array(2 * WORKERS).fill("good"));

    const r = await ca.revoke(admin.identity, { serial: cert.serial, reason: "keyCompromise" });
    expect(r.status, r.raw).toBe(200);
    const t0 = Date.now();
    await eventually(5_000, "every worker answers revoked", () => statuses(cert, 2 * WORKERS, ["-no_nonce"]), (s) => s.every((x) => x === "revoked"));
    expect(await statuses(cert, 2 * WORKERS)).toEqual(Array(2 * WORKERS).fill("revoked"));
    // The CRL the primary signed, served by the workers from the store, full and the certificate's partition.
    await eventually(
      5_000,
      "every worker serves a CRL with the revocation",
      async () => {
        const out: boolean[] = [];
        for (let i = 0; i < 2 * WORKERS; i++) {
          const der = Buffer.from(await (await fetch(`${d.publicUrl}/crl`, { headers: { connection: "close" } })).arrayBuffer());
          out.push(parseCrl(der).entries.some((e) => e.serial === cert.serial));
        }
        return out;
      },
      (seen) => seen.every(Boolean),
    );
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("serves a CRL above crl.streamAbove from the store: byte-identical to the primary's, verified by openssl, HEAD and conditional GET as before", async () => {
    const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    try {
      // The primary's current full CRL, as it stored it (the revocation of the test above is in it).
      const kid = db.prepare("SELECT key_id FROM issuers WHERE role = 'intermediate' AND status = 'active'").pluck().get() as string;
      const row = db.prepare("SELECT crl_number, write_id, der_length FROM crls WHERE shard = -1 AND issuer_key_id = ?").get(kid) as
        | { crl_number: number; write_id: string; der_length: number }
        | undefined;
      expect(row?.der_length).toBeGreaterThan(STREAM_ABOVE);
      const stored = Buffer.concat(
        db.prepare("SELECT bytes FROM crl_chunks WHERE issuer_key_id = ? AND shard = -1 AND write_id = ? ORDER BY seq").pluck().all(kid, row!.write_id) as Buffer[],
      );
      for (let i = 0; i < 2 * WORKERS; i++) {
        const r = await fetch(`${d.publicUrl}/crl`, { headers: { connection: "close" } });
        const der = Buffer.from(await r.arrayBuffer());
        expect(r.status).toBe(200);
        expect(r.headers.get("content-length")).toBe(String(stored.length));
        expect(r.headers.get("etag")).toBe(`"${row!.crl_number}"`);
        expect(der.equals(stored), `request ${i}`).toBe(true);
        const head = await fetch(`${d.publicUrl}/crl`, { method: "HEAD", headers: { connection: "close" } });
        expect([head.status, head.headers.get("content-length"), (await head.arrayBuffer()).byteLength]).toEqual([200, String(stored.length), 0]);
        expect(await conditionalGetStatus(`${d.publicUrl}/crl`, `"${row!.crl_number}"`)).toBe(304);
        expect(await conditionalGetStatus(`${d.publicUrl}/crl`, `"${row!.crl_number - 1}"`)).toBe(200);
      }
      const path = join(ws.dir, "served.crl");
      writeFileSync(path, stored);
      const v = await opensslAsync(["crl", "-inform", "DER", "-in", path, "-CAfile", ca.intermediatePath, "-noout"]);
      expect(v.out).toContain("verify OK");
      // The bundle streams it too: its PEM block is the same bytes.
      const bundle = await (await fetch(`${d.publicUrl}/crls.pem`)).text();
      const blocks = [...bundle.matchAll(/-----BEGIN X509 CRL-----\n([^-]+)-----END X509 CRL-----\n/g)].map((m) => Buffer.from(m[1]!.replace(/\n/g, ""), "base64"));
      expect(blocks.some((b) => b.equals(stored))).toBe(true);
    } finally {
      db.close();
    }
  });

  it("says 503 on /healthz when the primary hangs (SIGSTOP), and ok again once it runs", async () => {
    // A connection a worker already holds: node:cluster's primary accepts new ones, so while it
    // is stopped only established connections reach a worker.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        httpGet(`${d.publicUrl}${path}`, { agent }, (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        }).on("error", reject);
      });
    try {
      expect((await get("/healthz")).status).toBe(200);
      process.kill(d.child.pid!, "SIGSTOP");
      let h: { status: number; body: string };
      try {
        h = await get("/healthz");
      } finally {
        process.kill(d.child.pid!, "SIGCONT");
      }
      expect(h.status).toBe(503);
      expect(JSON.parse(h.body)).toEqual({ status: "unavailable", reasons: ["the primary process does not answer"] });
      expect((await get("/healthz")).status).toBe(200);
    } finally {
      agent.destroy();
    }
  });

  it("replaces a worker killed with SIGKILL, and keeps answering meanwhile", async () => {
    const [victim] = workerPids(d.child.pid!);
    process.kill(victim!, "SIGKILL");
    // The other worker keeps serving while the primary starts a replacement. A connection the
    // primary handed to the victim in the instant before its death is lost with it (node:cluster
    // round-robin; docs/benchmarks.md "Scheduling": 1 request of 600 in the trial): at most one.
    const meanwhile: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await ocsp(cert, ["-no_nonce", "-timeout", "3"]);
      meanwhile.push(r.out.includes("Response verify OK") ? (/: (good|revoked|unknown)/.exec(r.out)?.[1] ?? "no status") : "lost");
    }
    expect(meanwhile.filter((x) => x === "lost").length, meanwhile.join()).toBeLessThanOrEqual(1);
    expect(meanwhile.filter((x) => x !== "lost").every((x) => x === "revoked"), meanwhile.join()).toBe(true);
    await eventually(15_000, "a replacement worker", async () => workerPids(d.child.pid!), (p) => p.length === WORKERS && !p.includes(victim!));
    expect(d.output).toMatch(/msg="worker exited; starting another" worker=\d code=null signal=SIGKILL/);
    expect(await statuses(cert, 2 * WORKERS)).toEqual(Array(2 * WORKERS).fill("revoked"));
  });

  it("workers exit when the primary is killed (no orphan keeps the port)", async () => {
    const pids = workerPids(d.child.pid!);
    expect(pids).toHaveLength(WORKERS);
    d.child.kill("SIGKILL");
    await eventually(5_000, "workers gone", async () => pids.filter(alive), (left) => left.length === 0);
  });
});

describe("workerExecArgv", () => {
  it("caps the workers' young generation unless the operator set it (node flags or NODE_OPTIONS)", () => {
    expect(workerExecArgv(["--enable-source-maps"], undefined)).toEqual(["--enable-source-maps", `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`]);
    expect(workerExecArgv(["--max-semi-space-size=8"], undefined)).toEqual(["--max-semi-space-size=8"]);
    expect(workerExecArgv([], "--max_semi_space_size=16 --trace-warnings")).toEqual([]);
    expect(workerExecArgv([], "--max-old-space-size=512")).toEqual([`--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`]);
  });
});
