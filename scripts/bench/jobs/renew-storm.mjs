import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { spawn } from "node:child_process";
import { availableParallelism } from "node:os";
import { runBounded, lastLine } from "../processes.mjs";
import { trackChild, killGroup } from "../cleanup.mjs";
import { startIssuanceDaemon, makeBodies, readItems, httpsPost, opensslVerify, recordProfileWindow } from "../issuance-fixture.mjs";
import { round } from "../report.mjs";

const LOAD = join(import.meta.dirname, "../storm-load.mjs");
/**
 * Load processes per storm, one per core: Node's TLS client costs ~5 ms of CPU per new
 * connection here (getPeerCertificate(true) of the server's chain, which every node client does
 * to check the server's name, is the largest part), and one event loop running 1,000 of them
 * stalled for up to 8.8 s, long enough for the daemon's 10 s handshake / first-request deadline
 * to close clients that were only waiting for the load generator.
 */
const LOAD_PROCESSES = Math.max(1, availableParallelism());
/** Issue 12's storm: 1,000 distinct clients (`--quick`: 100). */
const CLIENTS = { full: 1_000, quick: 100 };
/** The second, bounded storm: this many clients in flight at once (see below). */
const BOUNDED = 64;
/** Concurrent POST /v1/sign while issuing the clients' certificates before the storm. */
const ISSUE_CONCURRENCY = 16;
/** Renewed certificates checked with `openssl verify` per storm (all of them are checked with node:crypto). */
const OPENSSL_SAMPLE = 50;
const TARGET_P99_MS = 1_000;

/**
 * Issue 12's renewal storm: N distinct clients (1,000; `--quick` 100), each with its own key and
 * certificate, each opening a NEW TLS connection (full handshake, its own client certificate)
 * and POSTing /v1/renew once (empty body: same key), all released at once. Figures: the storm's
 * wall time, per-client p50/p99/max from connect start to response end, failures.
 *
 * Before the timed part: a fresh issuance daemon with its defaults (as the renew job), N keys +
 * CSRs + one-time JWTs (sign-bodies.mjs), N certificates through POST /v1/sign (16 at a time; a
 * sample checked with `openssl verify`). The load is storm-load.mjs in its own process: each
 * client has its own 127.77.a.b source address, so the daemon's per-client connection cap (256)
 * is not hit and its config is NOT changed; N ≤ listen.maxConnections.api (1024).
 *
 * Then a second storm of the same clients, at most 64 connections in flight, presenting the
 * certificates the first storm handed out (the next renewal cycle): on 2 shared cores the load
 * generator's own 1,000 handshakes compete with the daemon's, so "all at once" also measures the
 * client; 64 in flight tells the daemon's queueing from the client's. Its figures are extra
 * keys (renew_storm_c64_*); the target is on the all-at-once storm.
 *
 * Every renewed certificate is checked: 201, parsed by X509Certificate, same SANs and same public
 * key as the one presented, a serial not seen before, inside its validity, issued by the chain's
 * intermediate (checkIssued + verify(publicKey)) which chains to a root of /roots.pem; a sample
 * of 50 also with `openssl verify`; and the daemon must have logged one "certificate renewed"
 * from each presented serial. Any non-201 (except a 503 with Retry-After, retried), socket error,
 * timeout, resumed TLS session or bad certificate fails the job.
 */
export default {
  name: "renew_storm",
  keys: [
    "renew_storm_clients",
    "renew_storm_s",
    "renew_storm_p50_ms",
    "renew_storm_p99_ms",
    "renew_storm_max_ms",
    "renew_storm_failed",
    "renew_storm_c64_s",
    "renew_storm_c64_p50_ms",
    "renew_storm_c64_p99_ms",
    "renew_storm_c64_failed",
  ],
  target: (fig) => (fig.renew_storm_p99_ms === null || fig.renew_storm_p99_ms === undefined ? "" : `p99 ${fig.renew_storm_p99_ms} ms (< ${TARGET_P99_MS} ms: ${fig.renew_storm_p99_ms < TARGET_P99_MS ? "met" : "NOT met"})`),
  async run(ctx) {
    const n = ctx.opts.quick ? CLIENTS.quick : CLIENTS.full;
    const f = await startIssuanceDaemon(ctx, "renew_storm");
    const roots = rootsOf(f.roots);

    // The clients: N distinct keys and certificates, issued the normal way.
    const bodies = await makeBodies(f.dir, { count: n, files: 1, keys: true, jwtKey: f.jwtKey, sub: "storm-holders" });
    const items = readItems(`${bodies.base}.0`);
    const t0 = performance.now();
    const issued = new Array(items.length);
    let next = 0;
    const issueOne = async () => {
      while (next < items.length) {
        const k = next++;
        const res = await httpsPost(`${f.daemon.apiUrl}/v1/sign`, items[k].body, { Authorization: `Bearer ${items[k].token}` }, { ca: f.roots });
        if (res.status !== 201) throw new Error(`POST /v1/sign of client ${k} answered ${res.status}: ${res.text.slice(0, 200)}`);
        issued[k] = JSON.parse(res.text);
      }
    };
    await Promise.all(Array.from({ length: ISSUE_CONCURRENCY }, issueOne));
    for (const k of sampleIndexes(n, 5)) await opensslVerify(f.dir, f.rootsFile, issued[k].chain, issued[k].certificate);
    ctx.log(`renew_storm: ${n} client certificates issued in ${round((performance.now() - t0) / 1000, 1)} s (keys + CSRs + tokens made in ${round(bodies.ms / 1000, 1)} s)`);
    const gen0 = items.map((it, k) => ({ cert: issued[k].certificate, key: it.keyPem }));

    // Storm 1: everyone at once.
    const all = await storm(ctx, f, "renew_storm", gen0, 0);
    const allBad = all.summary.failed > 0 ? failureText(all.summary, all.records) : await checkRenewed(f, roots, gen0, all.records);
    if (allBad) {
      return { status: "failed", reason: `all at once: ${allBad}`, figures: { renew_storm_clients: n, renew_storm_failed: all.summary.failed || null } };
    }
    // Storm 2: the next cycle (the certificates storm 1 handed out, same keys), 64 in flight.
    const gen1 = all.records.map((r, k) => ({ cert: r.answer.certificate, key: gen0[k].key }));
    const c64 = await storm(ctx, f, "renew_storm_c64", gen1, BOUNDED);
    const c64Bad = c64.summary.failed > 0 ? failureText(c64.summary, c64.records) : await checkRenewed(f, roots, gen1, c64.records);

    const s = all.summary;
    const backlog = await apiBacklog(f.daemon.apiUrl);
    const figures = {
      renew_storm_clients: n,
      renew_storm_s: round(s.wall_ms / 1000, 2),
      renew_storm_p50_ms: round(s.p50_ms),
      renew_storm_p99_ms: round(s.p99_ms),
      renew_storm_max_ms: round(s.max_ms),
      renew_storm_failed: s.failed,
      renew_storm_c64_s: c64Bad ? null : round(c64.summary.wall_ms / 1000, 2),
      renew_storm_c64_p50_ms: c64Bad ? null : round(c64.summary.p50_ms),
      renew_storm_c64_p99_ms: c64Bad ? null : round(c64.summary.p99_ms),
      renew_storm_c64_failed: c64.summary.failed,
    };
    const phases = (x) =>
      `TCP connect p50/p99 ${round(x.tcp_p50_ms)}/${round(x.tcp_p99_ms)} ms, TLS handshake p50/p99 ${round(x.tls_p50_ms)}/${round(x.tls_p99_ms)} ms, request p50/p99 ${round(x.req_p50_ms)}/${round(x.req_p99_ms)} ms; ` +
      `client loop delay p99 ${round(x.client_loop_delay_p99_ms)} ms, listen-queue overflows ${x.listen_overflows ?? "?"} (machine-wide)`;
    const text =
      `${n} clients at once: ${figures.renew_storm_s} s, p50 ${figures.renew_storm_p50_ms} ms, p99 ${figures.renew_storm_p99_ms} ms, max ${figures.renew_storm_max_ms} ms, ` +
      `${s.completed} renewed, ${s.failed} failed${s.retried ? `, ${s.retried} retried after 503` : ""} (${phases(s)}, API accept backlog ${backlog ?? "?"}; ` +
      `requests created in ${round(s.client_release_ms)} ms; daemon CPU ${round(all.cores, 2)} cores, client CPU ${round(s.client_cpu_ms / 1000, 1)} s); ` +
      (c64Bad
        ? `${BOUNDED} at a time FAILED (${c64Bad})`
        : `${BOUNDED} at a time: ${figures.renew_storm_c64_s} s, p50 ${figures.renew_storm_c64_p50_ms} ms, p99 ${figures.renew_storm_c64_p99_ms} ms (${phases(c64.summary)}; daemon CPU ${round(c64.cores, 2)} cores)`);
    if (c64Bad) return { status: "failed", reason: `${BOUNDED} at a time: ${c64Bad}`, figures };
    return { status: "ok", figures, text };
  },
};

/**
 * One storm through storm-load.mjs, split over LOAD_PROCESSES processes (contiguous slices of
 * the clients): every process makes its clients' TLS contexts, says READY, and all are released at the
 * same CLOCK_MONOTONIC instant. Returns the merged summary, each client's record (in client
 * order) and the daemon's CPU (cores) over the storm.
 */
async function storm(ctx, f, label, creds, concurrency) {
  const procs = Math.min(LOAD_PROCESSES, creds.length);
  // With --cpu-prof the load generator is profiled too (CPU.*.<its pid>.cpuprofile in the same dir):
  // on these 2 cores its share of the storm is part of what the figures say.
  const prof = ctx.opts.cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${resolve(ctx.opts.cpuProf)}`] : [];
  const parts = [];
  for (let p = 0; p < procs; p++) {
    const per = Math.ceil(creds.length / procs);
    const mine = creds.map((c, k) => [c, k]).slice(p * per, (p + 1) * per);
    if (!mine.length) continue;
    const credsFile = join(f.dir, `${label}.${p}.creds.jsonl`);
    writeFileSync(credsFile, mine.map(([c]) => JSON.stringify(c)).join("\n") + "\n", { mode: 0o600 });
    const out = join(f.dir, `${label}.${p}.out.jsonl`);
    const perProc = concurrency > 0 ? Math.max(1, Math.round(concurrency / procs)) : 0;
    const args = [...prof, LOAD, "--url", `${f.daemon.apiUrl}/v1/renew`, "--ca", f.rootsFile, "--creds", credsFile, "--out", out];
    args.push("--concurrency", String(perProc), "--first", String(mine[0][1]), "--wait-release");
    parts.push({ p, out, index: mine.map(([, k]) => k), child: startLoad(args) });
  }
  // The daemon's CPU, sampled every 100 ms, so it can be cut to the storm itself (the load
  // processes' start and their TLS contexts come before the release).
  const samples = [];
  const sample = () => samples.push([process.hrtime.bigint(), f.daemon.cpuTicks()]);
  let sampler;
  let net0;
  let results;
  try {
    await Promise.all(parts.map((x) => x.child.ready));
    net0 = tcpCounters();
    sample();
    sampler = setInterval(sample, 100);
    // 50 ms ahead: time for the line to reach every process.
    const at = process.hrtime.bigint() + 50_000_000n;
    for (const x of parts) x.child.release(at);
    results = await Promise.all(parts.map((x) => x.child.done));
  } finally {
    clearInterval(sampler);
    for (const x of parts) x.child.kill();
  }
  sample();
  const net1 = tcpCounters();
  const subs = results.map((r, p) => {
    const m = r.stdout.match(/^STORM_JSON (.*)$/m);
    if (!m) throw new Error(`no storm-load result for ${label} process ${p} (exit ${r.code}${r.timedOut ? ", timed out" : ""}): ${lastLine(r.stderr || r.stdout)}`);
    return JSON.parse(m[1]);
  });
  const records = new Array(creds.length);
  for (const x of parts) {
    const recs = readFileSync(x.out, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    if (recs.length !== x.index.length) throw new Error(`${label}: process ${x.p} wrote ${recs.length} records for ${x.index.length} clients`);
    recs.forEach((r, j) => (records[x.index[j]] = { ...r, i: x.index[j] }));
  }
  const summary = mergeSummaries(subs, records);
  const release = subs.map((x) => BigInt(x.release_ns)).reduce((a, b) => (a < b ? a : b));
  const end = subs.map((x) => BigInt(x.end_ns)).reduce((a, b) => (a > b ? a : b));
  recordProfileWindow(ctx, label, f.daemon, release, end);
  const a = samples.findLast(([t]) => t <= release) ?? samples[0];
  const b = samples.find(([t]) => t >= end) ?? samples.at(-1);
  const cores = a[1] === null || b[1] === null || b[0] <= a[0] ? null : (b[1] - a[1]) / 100 / (Number(b[0] - a[0]) / 1e9);
  // Machine-wide (other sessions count too): SYNs the kernel dropped because a listen queue was full.
  summary.listen_overflows = net0 && net1 ? net1.ListenOverflows - net0.ListenOverflows : null;
  summary.syn_retrans = net0 && net1 ? net1.TCPSynRetrans - net0.TCPSynRetrans : null;
  summary.wall_ms = Number(end - release) / 1e6;
  ctx.log(`${label}: ${JSON.stringify(summary)}`);
  return { summary, records, cores };
}

/** The processes' figures as one storm: percentiles over every client, sums and maxima of the rest. */
function mergeSummaries(subs, records) {
  const ok = records.filter((r) => !r.error);
  const pct = (xs, p) => {
    const s = Float64Array.from(xs.filter((x) => x !== null)).sort();
    return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : null;
  };
  const statuses = {};
  for (const r of records) statuses[r.status ?? "error"] = (statuses[r.status ?? "error"] ?? 0) + 1;
  const sum = (k) => subs.reduce((n, x) => n + (x[k] ?? 0), 0);
  const max = (k) => subs.reduce((n, x) => Math.max(n, x[k] ?? 0), 0);
  return {
    clients: records.length,
    processes: subs.length,
    concurrency: sum("concurrency"),
    completed: ok.length,
    failed: records.length - ok.length,
    retried: sum("retried"),
    reused: sum("reused"),
    p50_ms: pct(ok.map((r) => r.ms), 50),
    p99_ms: pct(ok.map((r) => r.ms), 99),
    max_ms: ok.length ? Math.max(...ok.map((r) => r.ms)) : null,
    tcp_p50_ms: pct(ok.map((r) => r.tcp_ms), 50),
    tcp_p99_ms: pct(ok.map((r) => r.tcp_ms), 99),
    tls_p50_ms: pct(ok.map((r) => r.tls_ms), 50),
    tls_p99_ms: pct(ok.map((r) => r.tls_ms), 99),
    req_p50_ms: pct(ok.map((r) => r.req_ms), 50),
    req_p99_ms: pct(ok.map((r) => r.req_ms), 99),
    statuses,
    first_error: subs.map((x) => x.first_error).find(Boolean) ?? null,
    client_cpu_ms: sum("client_cpu_ms"),
    client_release_ms: subs[0].client_release_ms === null ? null : max("client_release_ms"),
    client_loop_delay_p99_ms: max("client_loop_delay_p99_ms"),
    client_loop_delay_max_ms: max("client_loop_delay_max_ms"),
    release_late_ms: max("release_late_ms"),
  };
}

/**
 * A storm-load.mjs process with --wait-release: `ready` resolves on its READY line, `release(ns)`
 * writes the release instant, `done` resolves with {code, stdout, stderr, timedOut} (bounded).
 */
function startLoad(args, timeoutMs = 300_000) {
  const child = trackChild(spawn(process.execPath, args, { detached: true, stdio: ["pipe", "pipe", "pipe"] }));
  let stdout = "";
  let stderr = "";
  let timedOut = false;
  let onReady;
  let onFail;
  const ready = new Promise((res, rej) => ([onReady, onFail] = [res, rej]));
  child.stdout.on("data", (d) => {
    stdout += d;
    if (/^READY$/m.test(stdout)) onReady();
  });
  child.stderr.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child);
  }, timeoutMs);
  const done = new Promise((res, rej) => {
    child.on("error", (e) => {
      onFail(e);
      rej(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      onFail(new Error(`storm-load exited (${code}) before READY: ${lastLine(stderr || stdout)}`));
      res({ code, stdout, stderr, timedOut });
    });
  });
  return { ready, done, release: (ns) => child.stdin.end(`${ns}\n`), kill: () => killGroup(child) };
}

/** TcpExt counters of /proc/net/netstat (this network namespace), or null where there is none. */
function tcpCounters() {
  try {
    const lines = readFileSync("/proc/net/netstat", "utf8").split("\n").filter((l) => l.startsWith("TcpExt:"));
    const [names, values] = lines.map((l) => l.split(/\s+/).slice(1));
    return Object.fromEntries(names.map((n, i) => [n, Number(values[i])]));
  } catch {
    return null;
  }
}

/** The accept backlog of the daemon's API listener (`ss -ltn`: Send-Q of a listening socket). */
async function apiBacklog(apiUrl) {
  const port = new URL(apiUrl).port;
  const r = await runBounded("ss", ["-Hltn", `sport = :${port}`], { timeoutMs: 5_000 });
  const m = r.code === 0 ? r.stdout.trim().split(/\s+/) : [];
  return m.length >= 3 ? Number(m[2]) : null;
}

/**
 * What failed and when: by the phase the client was in (the daemon closes a connection whose TLS
 * handshake or first request is not done `listen.handshakeTimeout`, 10 s, after it was accepted),
 * with the time from connect start to the failure.
 */
function failureText(s, records) {
  const failed = records.filter((r) => r.error);
  const phase = (r) => (r.tcp_ms === null ? "before TCP connect" : r.tls_ms === null ? "in the TLS handshake" : "after the handshake");
  const byPhase = {};
  for (const r of failed) byPhase[phase(r)] = (byPhase[phase(r)] ?? 0) + 1;
  const ms = failed.map((r) => r.ms).sort((x, y) => x - y);
  const tcp = failed.map((r) => r.tcp_ms).filter((x) => x !== null).sort((x, y) => x - y);
  return (
    `${s.failed} of ${s.clients} clients failed (${JSON.stringify(s.statuses)}${s.reused ? `, ${s.reused} resumed sessions` : ""}; ` +
    `${Object.entries(byPhase).map(([k, v]) => `${v} ${k}`).join(", ")}; failed ${round(ms[0])}–${round(ms.at(-1))} ms after connect start, ` +
    `TCP connected at ${round(tcp[0])}–${round(tcp.at(-1))} ms; client loop delay max ${round(s.client_loop_delay_max_ms)} ms; first: ${s.first_error})`
  );
}

/**
 * Every renewed certificate against the one its client presented; null when all are right, else
 * what is wrong (the first problem and how many). Also one "certificate renewed" log line per
 * presented serial.
 */
async function checkRenewed(f, roots, presented, records) {
  const problems = [];
  const seen = new Set();
  const intermediates = new Map();
  const now = new Date();
  for (const [k, r] of records.entries()) {
    const bad = (m) => problems.push(`client ${k}: ${m}`);
    const prev = new X509Certificate(presented[k].cert);
    let cert;
    try {
      cert = new X509Certificate(r.answer.certificate);
    } catch (e) {
      bad(`certificate does not parse: ${e.message}`);
      continue;
    }
    if (serialKey(cert.serialNumber) !== serialKey(r.answer.serial)) bad(`serial ${r.answer.serial} is not the certificate's ${cert.serialNumber}`);
    if (cert.serialNumber === prev.serialNumber) bad("same serial as the presented certificate");
    if (seen.has(cert.serialNumber)) bad(`serial ${cert.serialNumber} handed out twice`);
    seen.add(cert.serialNumber);
    if (cert.subjectAltName !== prev.subjectAltName || !cert.subjectAltName) bad(`SANs ${cert.subjectAltName} differ from the presented ${prev.subjectAltName}`);
    if (!cert.publicKey.export({ type: "spki", format: "der" }).equals(prev.publicKey.export({ type: "spki", format: "der" }))) bad("public key differs from the presented certificate's (an empty body keeps the key)");
    if (!(new Date(cert.validFrom) <= now && now < new Date(cert.validTo))) bad(`not valid now (${cert.validFrom} – ${cert.validTo})`);
    const interPem = r.answer.chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
    if (!interPem) {
      bad("no intermediate in the chain");
      continue;
    }
    let inter = intermediates.get(interPem);
    if (!inter) {
      inter = new X509Certificate(interPem);
      if (!roots.some((root) => inter.checkIssued(root) && inter.verify(root.publicKey))) bad(`intermediate ${inter.subject} does not chain to /roots.pem`);
      intermediates.set(interPem, inter);
    }
    if (!cert.checkIssued(inter) || !cert.verify(inter.publicKey)) bad(`not issued by the chain's intermediate ${inter.subject}`);
  }
  // The daemon's own record: one renewal from each presented serial.
  const from = new Set(presented.map((p) => serialKey(new X509Certificate(p.cert).serialNumber)));
  let logged = 0;
  for (const l of f.daemon.lines) if (l.msg === "certificate renewed" && from.has(serialKey(l.renewedFrom))) logged++;
  if (logged !== presented.length) problems.push(`the daemon logged ${logged} "certificate renewed" lines from the ${presented.length} presented serials`);
  if (problems.length) return `${problems.length} problems; first: ${problems[0]}`;
  for (const k of sampleIndexes(records.length, OPENSSL_SAMPLE)) await opensslVerify(f.dir, f.rootsFile, records[k].answer.chain, records[k].answer.certificate);
  return null;
}

/** A serial as comparable text: lower-case hex without leading zeros (node prints upper case, the API lower). */
function serialKey(s) {
  return String(s).toLowerCase().replace(/^0+(?=.)/, "");
}

/** Up to `count` indexes spread evenly over 0..n-1 (first and last included). */
function sampleIndexes(n, count) {
  if (n <= count) return [...Array(n).keys()];
  return [...new Set(Array.from({ length: count }, (_, j) => Math.round((j * (n - 1)) / (count - 1))))];
}

function rootsOf(pem) {
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (!certs.length) throw new Error("/roots.pem holds no certificate");
  return certs.map((c) => new X509Certificate(c));
}
