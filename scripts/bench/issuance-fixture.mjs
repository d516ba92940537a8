import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { runOk } from "./processes.mjs";
import { fetchText } from "./fleet-fixture.mjs";

/** The bench platform: a `jwt` provisioner whose keys are a JWKS file in the job's temp dir. */
export const BENCH_ISSUER = "https://bench-platform.invalid";
export const BENCH_AUDIENCE = "https://fleetca-bench.invalid/v1/sign";
const KID = "bench-1";
const BODIES = join(import.meta.dirname, "sign-bodies.mjs");

/**
 * Bodies the best case could use up: wrk's whole window at this rate. 4,000/s × 10 s = 40,000
 * (fleetca did ~190/s before issue 12's work; cfssl without storage ~5,000/s). A run that uses
 * them all fails (fleetca refuses a replayed token), it does not reuse them.
 */
export const BODIES_PER_S = 4_000;

/**
 * A fresh daemon for an issuance job: its own temp dataDir and the bench platform (benchPlatform).
 */
export async function startIssuanceDaemon(ctx, label) {
  const dir = ctx.tempDir(label);
  const platform = benchPlatform(dir);
  const daemon = await ctx.startDaemon(dir, { extraConfig: [platform.provisionersLine] });
  return { dir, daemon, jwtKey: platform.jwtKey, ...(await fetchRoots(dir, daemon)) };
}

/**
 * The bench platform in `dir`: an ES256 platform key (0600) whose public half is the JWKS of a
 * `jwt` provisioner `bench-jwt` (aud BENCH_AUDIENCE, SANs `{sub}.bench.internal`); the bootstrap
 * provisioner stays configured. Returns { jwtKey (its path), provisionersLine (config YAML) }.
 */
export function benchPlatform(dir) {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const jwtKey = join(dir, "platform-key.pem");
  writeFileSync(jwtKey, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  const jwks = join(dir, "jwks.json");
  writeFileSync(jwks, JSON.stringify({ keys: [{ ...publicKey.export({ format: "jwk" }), kid: KID, alg: "ES256", use: "sig" }] }));
  const provisioners = [
    { name: "bootstrap", type: "bootstrap" },
    { name: "bench-jwt", type: "jwt", issuer: BENCH_ISSUER, audience: BENCH_AUDIENCE, jwks: { file: jwks }, algorithms: ["ES256"], sans: { dns: ["{sub}.bench.internal"] } },
  ];
  return { jwtKey, provisionersLine: `provisioners: ${JSON.stringify(provisioners)}` };
}

/** The daemon's /roots.pem, also written to `dir`/roots.pem (for `openssl verify`): { roots, rootsFile }. */
export async function fetchRoots(dir, daemon) {
  const roots = await fetchText(`${daemon.publicUrl}/roots.pem`);
  writeFileSync(join(dir, "roots.pem"), roots);
  return { roots, rootsFile: join(dir, "roots.pem") };
}

/**
 * Runs sign-bodies.mjs (its own process, worker threads) and returns {base, count, ms}: wrk
 * thread k reads `${base}.${k}`. `files` = wrk threads; fleetca bodies carry their JWT.
 */
export async function makeBodies(dir, { count, files, format = "fleetca", keys = false, jwtKey, sub = "bodies" }) {
  const out = join(dir, sub);
  mkdirSync(out, { recursive: true, mode: 0o700 });
  const args = [BODIES, "--out", out, "--count", String(count), "--files", String(files), "--format", format];
  if (keys) args.push("--keys");
  if (format === "fleetca") args.push("--jwt-key", jwtKey, "--kid", KID, "--iss", BENCH_ISSUER, "--aud", BENCH_AUDIENCE);
  const r = await runOk(process.execPath, args, { timeoutMs: 180_000 });
  const j = JSON.parse(r.stdout.trim().split("\n").at(-1));
  return { base: join(out, "bodies.txt"), count: j.count, ms: j.ms, files: j.files };
}

/** Items of a bodies file: {token, body, keyPem?}. */
export function readItems(file) {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [token, body, key] = l.split("\t");
      return { token, body, keyPem: key ? JSON.parse(key) : undefined };
    });
}

/**
 * One POST of an item outside the timed window: 201 expected, and the certificate must verify
 * with `openssl verify` against /roots.pem and the returned chain. Returns the parsed answer.
 */
export async function issueChecked(f, item, { verify = true } = {}) {
  const res = await httpsPost(`${f.daemon.apiUrl}/v1/sign`, item.body, { Authorization: `Bearer ${item.token}` }, { ca: f.roots });
  if (res.status !== 201) throw new Error(`POST /v1/sign answered ${res.status}: ${res.text.slice(0, 200)}`);
  const j = JSON.parse(res.text);
  if (verify) await opensslVerify(f.dir, f.rootsFile, j.chain, j.certificate);
  return j;
}

/** `openssl verify` of one certificate against caFile (and the intermediates in chainPem, if any). */
export async function opensslVerify(dir, caFile, chainPem, certPem) {
  const chain = join(dir, "probe-chain.pem");
  const cert = join(dir, "probe-cert.pem");
  if (chainPem) writeFileSync(chain, chainPem);
  writeFileSync(cert, certPem);
  const r = await runOk("openssl", ["verify", "-CAfile", caFile, ...(chainPem ? ["-untrusted", chain] : []), cert], { timeoutMs: 10_000 });
  if (!/: OK\s*$/.test(r.stdout)) throw new Error(`openssl verify: ${r.stdout.trim()}`);
}

export function httpsPost(url, body, headers, tls = {}) {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: "POST", timeout: 20_000, ...tls, headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), ...headers } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode, text }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout: ${url}`)));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * CPU the daemon used over a window, in cores (utime+stime ticks / wall time; 100 ticks/s on
 * Linux): whether issuance is bound by one core (≈1.0) or uses both (up to 2.0).
 */
export function cpuMeter(daemon) {
  const t0 = performance.now();
  const c0 = daemon.cpuTicks();
  return () => {
    const c1 = daemon.cpuTicks();
    const s = (performance.now() - t0) / 1000;
    return c0 === null || c1 === null || s <= 0 ? null : (c1 - c0) / 100 / s;
  };
}

/**
 * With --cpu-prof, notes when the timed window ran next to the profiles, so
 * profile-summary.mjs --window keeps only it: CLOCK_MONOTONIC µs (process.hrtime, the clock of
 * V8's profile timestamps on Linux) and, for reading, ms since the daemon's spawn.
 */
export function recordProfileWindow(ctx, job, daemon, fromNs, toNs) {
  if (!ctx.opts.cpuProf) return;
  const file = join(ctx.opts.cpuProf, `${job}-${daemon.pid}.window.json`);
  const sinceSpawn = (ns) => Math.round(Number(ns - daemon.startedAt) / 1e6);
  const w = { job, pid: daemon.pid, fromUs: Number(fromNs / 1000n), toUs: Number(toNs / 1000n), fromMs: sinceSpawn(fromNs), toMs: sinceSpawn(toNs) };
  writeFileSync(file, JSON.stringify(w) + "\n");
  ctx.log(`${job}: profile window ${w.fromMs}–${w.toMs} ms after spawn of pid ${daemon.pid} (${file})`);
}
