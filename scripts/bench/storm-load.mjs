#!/usr/bin/env node
/**
 * The load generator of the `renew_storm` job (issue 12: "a renewal storm of 1,000 distinct
 * clients each opening a new TLS connection"), in its own process. Client i presents ITS OWN
 * certificate and key (line i of --creds) on a NEW TLS connection and POSTs URL once with an
 * empty body (renewal with the same key):
 *
 *   - a new connection each: `agent: false` (a throwaway https.Agent, so no keep-alive and no
 *     session cache) and no `session` option; every socket is checked with isSessionReused()
 *     and a resumed one counts as a failure, so "full handshake each" cannot silently be false;
 *   - its own source address: 127.77.a.b, distinct per client (Linux routes all of 127.0.0.0/8
 *     to lo), as 1,000 hosts would come from 1,000 addresses. From one address the daemon's
 *     per-client cap (listen.maxConnectionsPerClient, 256) would close every connection past
 *     the 256th before TLS: that is the cap doing its job against a flood, not a storm;
 *   - each client's TLS context (its cert, key and the CA's roots) is made BEFORE the release,
 *     as a host has its files loaded before its timer fires;
 *   - `--concurrency 0` (default): all clients released at once, in one synchronous loop;
 *     `--concurrency N`: N at a time, the next client starting when one finishes.
 *
 * Latency of a client: from just before its request is created (connect start) to the end of
 * the response, split into TCP connect, TLS handshake (connect → secureConnect) and request →
 * response end. A 503 answer carrying Retry-After is waited out and retried on a new connection
 * (at most --max-retries times; the latency keeps counting); any other non-201, socket error,
 * timeout or resumed session is a failure.
 *
 *   node storm-load.mjs --url URL --ca FILE --creds FILE --out FILE [--concurrency N]
 *       [--timeout-ms 30000] [--max-retries 3] [--first K] [--wait-release]
 *
 * `--first K`: these are clients K… of a storm split over several processes (source addresses
 * stay distinct). `--wait-release`: print READY once the contexts are made, then read a
 * CLOCK_MONOTONIC time in ns on stdin and release at that instant (every process of the storm
 * gets the same one; `release_late_ms` says how late this one was).
 *
 * Writes --out: one JSON line per client {i, status, ms, tcp_ms, tls_ms, req_ms, retries,
 * error?, answer?} (answer = the 201's JSON: serial, certificate, chain; public data). Prints one
 * line `STORM_JSON {clients, completed, failed, retried, reused, wall_ms, p50_ms, p99_ms, max_ms,
 * tcp_*, tls_*, req_* (p50/p99), statuses, first_error, client_cpu_ms, client_release_ms,
 * client_loop_delay_p99_ms / _max_ms, release_ns, end_ns}`: the last two are process.hrtime
 * (CLOCK_MONOTONIC, the clock of V8's profiles) at the release and after the last answer.
 */
import { request } from "node:https";
import { createSecureContext } from "node:tls";
import { readFileSync, writeFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";

const a = parseArgs(process.argv.slice(2));
const ca = readFileSync(a.ca);
const creds = readFileSync(a.creds, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const url = new URL(a.url);

// Before the release: every client's context (parsing a P-256 key and a cert is not the storm).
const clients = creds.map((c, i) => ({ i, ctx: createSecureContext({ ca, cert: c.cert, key: c.key }), source: sourceAddress(a.first + i) }));

/** 127.77.a.b with a, b in 1..250: distinct for up to 62,500 clients, never .0 or .255. */
function sourceAddress(i) {
  if (i >= 250 * 250) throw new Error("storm-load: more clients than source addresses");
  return `127.77.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

const results = new Array(clients.length);
/** All at once: how long the synchronous loop that creates every client's request took. */
let releasedMs = null;
let firstError = null;
let reused = 0;

/** One attempt: a new TCP + TLS connection, one POST, the answer read to its end. */
function attempt(c) {
  return new Promise((resolve) => {
    const t = { start: performance.now(), tcp: null, tls: null };
    let settled = false;
    const done = (r) => {
      if (settled) return;
      settled = true;
      resolve({ ...r, end: performance.now(), t });
    };
    const req = request(
      {
        protocol: "https:",
        hostname: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "POST",
        agent: false,
        secureContext: c.ctx,
        localAddress: c.source,
        timeout: a.timeoutMs,
        headers: { "Content-Length": 0 },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => done({ status: res.statusCode, text, retryAfter: res.headers["retry-after"] }));
        res.on("error", (e) => done({ error: String(e?.message ?? e) }));
      },
    );
    req.on("socket", (s) => {
      s.once("connect", () => (t.tcp = performance.now()));
      s.once("secureConnect", () => {
        t.tls = performance.now();
        if (s.isSessionReused()) {
          reused++;
          done({ error: "TLS session was resumed (the storm must do full handshakes)" });
          s.destroy();
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${a.timeoutMs} ms`)));
    req.on("error", (e) => done({ error: `${e?.code ?? ""} ${e?.message ?? e}`.trim() }));
    req.end();
  });
}

async function client(c) {
  const start = performance.now();
  let retries = 0;
  for (;;) {
    const r = await attempt(c);
    const rec = { i: c.i, status: r.status ?? null, ms: r.end - start, end_ms: r.end - t0, retries };
    if (r.status === 503 && r.retryAfter !== undefined && retries < a.maxRetries) {
      retries++;
      const s = Number(r.retryAfter);
      await new Promise((res) => setTimeout(res, (Number.isFinite(s) && s >= 0 ? s : 1) * 1000));
      continue;
    }
    // The phases of the last attempt (the one that answered or failed).
    rec.tcp_ms = r.t.tcp === null ? null : r.t.tcp - r.t.start;
    rec.tls_ms = r.t.tls === null || r.t.tcp === null ? null : r.t.tls - r.t.tcp;
    rec.req_ms = r.t.tls === null ? null : r.end - r.t.tls;
    if (r.error) rec.error = r.error;
    else if (r.status !== 201) rec.error = `HTTP ${r.status}: ${r.text.slice(0, 200)}`;
    else {
      try {
        rec.answer = JSON.parse(r.text);
      } catch {
        rec.error = `201 with a body that is not JSON: ${r.text.slice(0, 100)}`;
      }
    }
    if (rec.error) firstError ??= `client ${a.first + c.i}: ${rec.error}`;
    results[c.i] = rec;
    return;
  }
}

// How late this process's own event loop ran during the storm: a late loop delays every
// timestamp below (a connect or an answer is only seen when the loop gets to it).
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
// With --wait-release (several load processes, one storm): say READY once every context is made,
// then release at the CLOCK_MONOTONIC instant (ns) the parent writes on stdin, the same for all.
let lateMs = null;
if (a.waitRelease) {
  process.stdout.write("READY\n");
  const at = BigInt((await firstLine(process.stdin)).trim());
  const wait = Number(at - process.hrtime.bigint()) / 1e6;
  if (wait > 1) await new Promise((r) => setTimeout(r, wait - 1));
  while (process.hrtime.bigint() < at); // the last millisecond: spin, for a common start
  lateMs = Number(process.hrtime.bigint() - at) / 1e6;
}
const cpu0 = process.cpuUsage();
const releaseNs = process.hrtime.bigint();
const t0 = performance.now();
if (a.concurrency > 0) {
  let next = 0;
  const worker = async () => {
    while (next < clients.length) await client(clients[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(a.concurrency, clients.length) }, worker));
} else {
  const started = clients.map(client);
  releasedMs = performance.now() - t0;
  await Promise.all(started);
}
const wallMs = performance.now() - t0;
const endNs = process.hrtime.bigint();
const cpu = process.cpuUsage(cpu0);
loopDelay.disable();

writeFileSync(a.out, results.map((r) => JSON.stringify(r)).join("\n") + "\n");
const ok = results.filter((r) => !r.error);
const pct = (xs, p) => {
  const s = Float64Array.from(xs.filter((x) => x !== null)).sort();
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : null;
};
const statuses = {};
for (const r of results) statuses[r.status ?? "error"] = (statuses[r.status ?? "error"] ?? 0) + 1;
const lat = ok.map((r) => r.ms);
console.log(
  "STORM_JSON " +
    JSON.stringify({
      clients: clients.length,
      concurrency: a.concurrency,
      completed: ok.length,
      failed: results.length - ok.length,
      retried: results.reduce((n, r) => n + (r.retries > 0 ? 1 : 0), 0),
      reused,
      wall_ms: wallMs,
      p50_ms: pct(lat, 50),
      p99_ms: pct(lat, 99),
      max_ms: lat.length ? Math.max(...lat) : null,
      tcp_p50_ms: pct(ok.map((r) => r.tcp_ms), 50),
      tcp_p99_ms: pct(ok.map((r) => r.tcp_ms), 99),
      tls_p50_ms: pct(ok.map((r) => r.tls_ms), 50),
      tls_p99_ms: pct(ok.map((r) => r.tls_ms), 99),
      req_p50_ms: pct(ok.map((r) => r.req_ms), 50),
      req_p99_ms: pct(ok.map((r) => r.req_ms), 99),
      statuses,
      first_error: firstError,
      client_cpu_ms: (cpu.user + cpu.system) / 1000,
      client_release_ms: releasedMs,
      client_loop_delay_p99_ms: loopDelay.percentile(99) / 1e6,
      client_loop_delay_max_ms: loopDelay.max / 1e6,
      release_late_ms: lateMs,
      release_ns: String(releaseNs),
      end_ns: String(endNs),
    }),
);
process.exit(0);

function firstLine(stream) {
  return new Promise((resolve, reject) => {
    let buf = "";
    stream.setEncoding("utf8");
    stream.on("data", (d) => {
      buf += d;
      if (buf.includes("\n")) resolve(buf.slice(0, buf.indexOf("\n")));
    });
    stream.on("end", () => reject(new Error("storm-load: stdin closed before the release time")));
  });
}

function parseArgs(argv) {
  const o = { concurrency: 0, timeoutMs: 30_000, maxRetries: 3, waitRelease: false, first: 0 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === "--wait-release") {
      o.waitRelease = true;
      continue;
    }
    const v = argv[++i];
    if (k === "--url") o.url = v;
    else if (k === "--ca") o.ca = v;
    else if (k === "--creds") o.creds = v;
    else if (k === "--out") o.out = v;
    else if (k === "--concurrency") o.concurrency = Number(v);
    else if (k === "--timeout-ms") o.timeoutMs = Number(v);
    else if (k === "--max-retries") o.maxRetries = Number(v);
    else if (k === "--first") o.first = Number(v);
    else throw new Error(`storm-load: unknown argument ${k}`);
  }
  if (!o.url || !o.ca || !o.creds || !o.out) throw new Error("storm-load: --url --ca --creds --out are required");
  if (!(o.concurrency >= 0) || !(o.timeoutMs > 0) || !(o.maxRetries >= 0)) throw new Error("storm-load: bad --concurrency / --timeout-ms / --max-retries");
  return o;
}
