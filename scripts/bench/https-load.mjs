#!/usr/bin/env node
/**
 * A small closed-loop HTTPS load generator for what wrk cannot do: present a client certificate
 * (mTLS). Runs in its own process (spawned by the renew job), N connections, each its own
 * keep-alive https.Agent with maxSockets 1 (so one TLS session per connection, as wrk keeps),
 * each sending its next request as soon as the previous answer is read, for a fixed duration.
 *
 *   node https-load.mjs --url URL --ca FILE --connections N --duration S
 *       --creds FILE    renew mode: JSON lines {cert, key}; connection i presents creds[i % n] and
 *                       POSTs an empty body (Content-Length: 0) to URL
 *       --bodies FILE   sign mode: lines "<jwt>\t<JSON body>" (sign-bodies.mjs), each used once,
 *                       the JWT as "Authorization: Bearer"; running out stops that connection
 *
 * Like wrk, only answers completed inside the window count, and the rate is answers / window.
 * Prints one line `LOAD_JSON {requests, duration_ms, non2xx, errors, exhausted, p50_ms, p99_ms,
 * max_ms, statuses, first_error}`; latencies are kept exactly (one double each) and sorted.
 */
import { Agent, request } from "node:https";
import { readFileSync } from "node:fs";

const a = parseArgs(process.argv.slice(2));
const ca = readFileSync(a.ca);
const creds = a.creds ? readFileSync(a.creds, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)) : null;
const items = a.bodies
  ? readFileSync(a.bodies, "utf8").split("\n").filter(Boolean).map((l) => {
      const [token, body] = l.split("\t");
      return { token, body };
    })
  : null;
if (!creds === !items) throw new Error("https-load: give exactly one of --creds or --bodies");

let next = 0;
let exhausted = 0;
let non2xx = 0;
let errors = 0;
let firstError = null;
const statuses = {};
const latencies = [];
const t0 = performance.now();
const end = t0 + a.duration * 1000;

async function connection(i) {
  const tls = creds ? { cert: creds[i % creds.length].cert, key: creds[i % creds.length].key } : {};
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca, ...tls });
  try {
    while (performance.now() < end) {
      let body = "";
      const headers = {};
      if (items) {
        if (next >= items.length) {
          exhausted++;
          return;
        }
        const it = items[next++];
        body = it.body;
        headers["Content-Type"] = "application/json";
        headers.Authorization = `Bearer ${it.token}`;
      }
      headers["Content-Length"] = Buffer.byteLength(body);
      const started = performance.now();
      try {
        const status = await post(agent, body, headers);
        const done = performance.now();
        if (done > end) return; // answered after the window: not counted, as wrk does
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status < 200 || status > 299) non2xx++;
        latencies.push(done - started);
      } catch (e) {
        if (performance.now() > end) return;
        errors++;
        firstError ??= String(e?.message ?? e);
      }
    }
  } finally {
    agent.destroy();
  }
}

function post(agent, body, headers) {
  return new Promise((resolve, reject) => {
    const req = request(a.url, { method: "POST", agent, headers, timeout: 10_000 }, (res) => {
      if (res.statusCode < 200 || res.statusCode > 299) {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => {
          firstError ??= `HTTP ${res.statusCode}: ${text.slice(0, 200)}`;
          resolve(res.statusCode);
        });
      } else {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
      }
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout after 10 s")));
    req.on("error", reject);
    req.end(body);
  });
}

await Promise.all(Array.from({ length: a.connections }, (_, i) => connection(i)));
const sorted = Float64Array.from(latencies).sort();
const pct = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : null);
const durationMs = Math.min(performance.now(), end) - t0;
console.log(
  "LOAD_JSON " +
    JSON.stringify({
      requests: sorted.length,
      duration_ms: durationMs,
      non2xx,
      errors,
      exhausted,
      p50_ms: pct(50),
      p99_ms: pct(99),
      max_ms: sorted.length ? sorted[sorted.length - 1] : null,
      statuses,
      first_error: firstError,
    }),
);
process.exit(0);

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[++i];
    if (k === "--url") o.url = v;
    else if (k === "--ca") o.ca = v;
    else if (k === "--connections") o.connections = Number(v);
    else if (k === "--duration") o.duration = Number(v);
    else if (k === "--creds") o.creds = v;
    else if (k === "--bodies") o.bodies = v;
    else throw new Error(`https-load: unknown argument ${k}`);
  }
  if (!o.url || !o.ca || !(o.connections > 0) || !(o.duration > 0)) throw new Error("https-load: --url --ca --connections --duration are required");
  return o;
}
