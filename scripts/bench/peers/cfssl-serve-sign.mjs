import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { trackChild, killGroup } from "../cleanup.mjs";
import { runOk } from "../processes.mjs";
import { freeLoopbackPort, waitForPort } from "../ports.mjs";
import { makeBodies, readItems, httpsPost, opensslVerify } from "../issuance-fixture.mjs";
import { runWrk, wrkStrictProblem, SIGN_LUA } from "../wrk.mjs";
import { round } from "../report.mjs";

/**
 * cfssl's own certdb schema for SQLite (cfssl certdb/sqlite/migrations, as the Debian 1.2.0
 * build reads and writes it: see cfssl-ocsprefresh.mjs). `cfssl serve` inserts one row per
 * signed certificate, each in its own transaction (go-sqlite3 defaults: rollback journal,
 * synchronous=FULL).
 */
const CERTDB_SCHEMA = `
CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob, status blob NOT NULL,
  reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL, PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier));`;

/**
 * cfssl bodies are made once per run (10,000 distinct CSRs, fresh P-256 keys) and cycled: cfssl
 * has no one-time token, and parses and signs a repeated CSR exactly like a new one.
 */
const CFSSL_BODIES = 10_000;
let bodiesOnce = null;

/**
 * Peer of sign_16 / sign_64: `cfssl serve` over HTTPS (`-tls-cert/-tls-key`, a P-256 serving
 * cert for 127.0.0.1), signing with the same P-256 throwaway CA as the other peers, a 24 h
 * profile with OCSP and CRL URLs (as fleetca's leaves carry), `POST /api/v1/cfssl/sign`
 * `{"certificate_request": PEM, "hosts": [name]}`, no authentication. Two runs in the same job:
 * nothing stored, then every certificate stored in SQLite (`-db-config`). wrk walks the same
 * kind of pre-made bodies (wrk-sign.lua). Without storage any non-2xx or socket error fails the
 * peer; with SQLite, cfssl's own failures under concurrency ("database is locked" at 64
 * connections) are counted and printed, and its rate counts only the 200s. One request is
 * checked first (200, `openssl verify` of the certificate against the CA).
 */
export function cfsslSignPeer({ connections, prefix }) {
  return {
    name: "cfssl serve",
    async run(ctx) {
      const ca = await ctx.peerCa();
      bodiesOnce ??= (async () => {
        const t0 = performance.now();
        const b = await makeBodies(ca.dir, { count: CFSSL_BODIES, files: ctx.opts.wrk.threads, format: "cfssl", sub: "cfssl-bodies" });
        ctx.log(`cfssl bodies: ${b.count} in ${round((performance.now() - t0) / 1000, 1)} s`);
        return b;
      })();
      const bodies = await bodiesOnce;
      const tls = await servingCert(ca.dir);
      const cfg = join(ca.dir, "cfssl-sign-config.json");
      writeFileSync(cfg, JSON.stringify({
        signing: { default: { expiry: "24h", usages: ["digital signature", "key encipherment", "server auth", "client auth"], ocsp_url: "http://127.0.0.1:8080/ocsp", crl_url: "http://127.0.0.1:8080/crl" } },
      }));
      const plain = await oneRun(ctx, { ca, tls, cfg, bodies, connections, db: null });
      if (plain.problem) return { status: "failed", reason: `no storage: ${plain.problem}`, figures: {} };
      const dbPath = join(ca.dir, `cfssl-certdb-${connections}.sqlite`);
      const db = new Database(dbPath);
      db.exec(CERTDB_SCHEMA);
      db.close();
      const dbCfg = join(ca.dir, `cfssl-db-${connections}.json`);
      writeFileSync(dbCfg, JSON.stringify({ driver: "sqlite3", data_source: dbPath }));
      const stored = await oneRun(ctx, { ca, tls, cfg, bodies, connections, db: dbCfg });
      // Read-write: a rollback journal left by the stopped cfssl must be rolled back to read.
      let rows = 0;
      let okPerS = null;
      let failed = 0;
      if (stored.w) {
        const check = new Database(dbPath);
        rows = check.prepare("SELECT count(*) AS c FROM certificates").get().c;
        check.close();
        // cfssl's own failures under concurrent writers ("database is locked", code 11000, and
        // requests that wait out wrk's 5 s timeout) are its result, not a harness error: the
        // figure counts only the 200s, and the failures are reported next to it.
        failed = stored.w.non2xx + stored.w.socketErrors;
        const ok = stored.w.requests - stored.w.non2xx;
        okPerS = ok / (stored.w.raw.duration_us / 1e6);
        // Every 200 must be a stored row (the probe adds one; wrk's last in-flight requests may add more).
        if (rows < ok) stored.problem = `only ${rows} rows stored for ${ok} answered requests`;
        else if (ok === 0) stored.problem = "no request succeeded";
        else stored.problem = null;
      }
      const figures = {
        [`peer_cfssl_${prefix}_per_s`]: round(plain.w.perS),
        [`peer_cfssl_${prefix}_p99_ms`]: round(plain.w.p99Ms, 2),
        [`peer_cfssl_db_${prefix}_per_s`]: stored.problem ? null : round(okPerS),
        [`peer_cfssl_db_${prefix}_p99_ms`]: stored.problem ? null : round(stored.w.p99Ms, 2),
        [`peer_cfssl_db_${prefix}_failed`]: stored.problem ? null : failed,
      };
      const failures = failed > 0 ? `, ${failed} requests FAILED (${stored.w.non2xx} non-2xx: "database is locked"; ${stored.w.socketErrors} timeouts)` : "";
      const text =
        `${round(plain.w.perS)} certs/s, p99 ${round(plain.w.p99Ms, 2)} ms; ` +
        (stored.problem ? `with SQLite FAILED (${stored.problem})` : `with SQLite ${round(okPerS)} certs/s, p99 ${round(stored.w.p99Ms, 2)} ms (${rows} rows${failures})`);
      return { status: "ok", figures, text };
    },
  };
}

async function oneRun(ctx, { ca, tls, cfg, bodies, connections, db }) {
  const port = await freeLoopbackPort();
  const args = ["serve", "-address", "127.0.0.1", "-port", String(port), "-ca", ca.caPem, "-ca-key", ca.caKey, "-config", cfg,
    "-tls-cert", tls.cert, "-tls-key", tls.key, "-loglevel", "3", ...(db ? ["-db-config", db] : [])];
  const child = trackChild(spawn("cfssl", args, { cwd: ca.dir, detached: true, stdio: "ignore" }));
  try {
    await waitForPort(port, 10_000);
    const url = `https://127.0.0.1:${port}/api/v1/cfssl/sign`;
    const probe = readItems(`${bodies.base}.0`)[0];
    const res = await httpsPost(url, probe.body, {}, { ca: tls.pem });
    if (res.status !== 200) return { problem: `probe answered ${res.status}: ${res.text.slice(0, 200)}` };
    const j = JSON.parse(res.text);
    if (!j.success || !j.result?.certificate) return { problem: `probe: ${res.text.slice(0, 200)}` };
    await opensslVerify(ca.dir, ca.caPem, null, j.result.certificate);
    const w = await runWrk({ url, wrk: { ...ctx.opts.wrk, connections }, script: SIGN_LUA, extraEnv: { BODIES: bodies.base } });
    return { w, problem: wrkStrictProblem(w) };
  } finally {
    // Stopped before the next run starts: two cfssl processes must not share the cores.
    const exited = new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once("exit", r)));
    killGroup(child, "SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3_000))]);
    killGroup(child, "SIGKILL");
    await exited;
  }
}

let tlsOnce = null;
/** A self-signed P-256 serving certificate for 127.0.0.1 (cfssl's -tls-cert/-tls-key). */
function servingCert(dir) {
  tlsOnce ??= (async () => {
    const key = join(dir, "cfssl-tls.key");
    const cert = join(dir, "cfssl-tls.pem");
    await runOk("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
      "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { timeoutMs: 15_000 });
    return { key, cert, pem: readFileSync(cert, "utf8") };
  })();
  return tlsOnce;
}
