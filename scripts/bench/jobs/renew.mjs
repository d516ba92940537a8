import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runBounded, lastLine } from "../processes.mjs";
import { startIssuanceDaemon, makeBodies, readItems, issueChecked, httpsPost, opensslVerify, cpuMeter, recordProfileWindow } from "../issuance-fixture.mjs";
import { round } from "../report.mjs";

const LOAD = join(import.meta.dirname, "../https-load.mjs");
/** Connections of both runs (as sign_16). */
const CONNECTIONS = 16;
/**
 * Bodies for the sign run of the Node client, per second of window: a Node client on these two
 * cores cannot send more than a few thousand HTTPS requests/s. Running out fails the job.
 */
const NODE_BODIES_PER_S = 3_000;

/**
 * `POST /v1/renew` over mTLS keep-alive. wrk cannot present a client certificate, so the load
 * comes from https-load.mjs (its own process): 16 connections, each with its own keep-alive
 * agent and its own certificate + key, for the usual duration, empty body (same key).
 *
 * Which certificates: 16 distinct ones, one per connection, issued through POST /v1/sign (a
 * `jwt` token each) before the window; each connection renews ITS certificate again and again.
 * The API allows that today (a renewal does not revoke or supersede the certificate presented,
 * and ClientAuthenticator only asks that it be ours, valid and unrevoked), and it is what a
 * keep-alive connection can do: the client certificate is bound to the TLS session, so moving
 * to the successor would need a new handshake per request. If renewal ever becomes once per
 * certificate, this job must open a connection per renewal with the previous answer's cert.
 *
 * For `renew_vs_sign` the same client then runs POST /v1/sign (pre-made distinct tokens and
 * CSRs, as sign_16) against the same daemon for the same duration: both sides of the ratio have
 * the same load generator, so its own cost on the shared cores cancels out. Any non-2xx answer
 * or socket error fails the job.
 */
export default {
  name: "renew",
  keys: ["renew_per_s", "renew_p50_ms", "renew_p99_ms", "renew_cores", "renew_sign_per_s", "renew_sign_p99_ms", "renew_vs_sign"],
  async run(ctx) {
    const f = await startIssuanceDaemon(ctx, "renew");
    const durationS = ctx.opts.wrk.durationS;
    // The renewing clients: 16 certificates issued the normal way, each checked with openssl.
    const holders = await makeBodies(f.dir, { count: CONNECTIONS, files: 1, keys: true, jwtKey: f.jwtKey, sub: "holders" });
    const creds = [];
    for (const item of readItems(`${holders.base}.0`)) {
      const j = await issueChecked(f, item);
      creds.push({ cert: j.certificate, key: item.keyPem });
    }
    const credsFile = join(f.dir, "holders.jsonl");
    writeFileSync(credsFile, creds.map((c) => JSON.stringify(c)).join("\n") + "\n", { mode: 0o600 });
    // One renewal outside the window: 201 and a certificate that verifies.
    const probe = await httpsPost(`${f.daemon.apiUrl}/v1/renew`, "", {}, { ca: f.roots, cert: creds[0].cert, key: creds[0].key });
    if (probe.status !== 201) return { status: "failed", reason: `probe renew answered ${probe.status}: ${probe.text.slice(0, 200)}`, figures: {} };
    const pj = JSON.parse(probe.text);
    await opensslVerify(f.dir, f.rootsFile, pj.chain, pj.certificate);

    const signBodies = await makeBodies(f.dir, { count: NODE_BODIES_PER_S * durationS, files: 1, jwtKey: f.jwtKey, sub: "sign-bodies" });

    const cpu = cpuMeter(f.daemon);
    const from = process.hrtime.bigint();
    const renew = await load(f, "renew", ["--creds", credsFile], durationS);
    const cores = cpu();
    recordProfileWindow(ctx, "renew", f.daemon, from, process.hrtime.bigint());
    const bad = problem(renew);
    if (bad) return { status: "failed", reason: `renew: ${bad}`, figures: {} };

    const sign = await load(f, "sign", ["--bodies", `${signBodies.base}.0`], durationS);
    const badSign = problem(sign) ?? (sign.exhausted > 0 ? `used up all ${signBodies.count} bodies: raise NODE_BODIES_PER_S` : null);
    const renewPerS = renew.requests / (renew.duration_ms / 1000);
    const signPerS = badSign ? null : sign.requests / (sign.duration_ms / 1000);
    const vs = signPerS ? round(renewPerS / signPerS, 2) : null;
    return {
      status: "ok",
      figures: {
        renew_per_s: round(renewPerS),
        renew_p50_ms: round(renew.p50_ms, 2),
        renew_p99_ms: round(renew.p99_ms, 2),
        renew_cores: round(cores, 2),
        renew_sign_per_s: round(signPerS),
        renew_sign_p99_ms: badSign ? null : round(sign.p99_ms, 2),
        renew_vs_sign: vs,
      },
      text:
        `${round(renewPerS)} renewals/s, p50 ${round(renew.p50_ms, 2)} ms, p99 ${round(renew.p99_ms, 2)} ms (${renew.requests} renewed by ${CONNECTIONS} mTLS clients, daemon CPU ${round(cores, 2)} cores); ` +
        (badSign ? `same client on /v1/sign FAILED (${badSign})` : `same client on /v1/sign ${round(signPerS)} certs/s, p99 ${round(sign.p99_ms, 2)} ms: renew_vs_sign ${vs} (≥ 0.8)`),
    };
  },
};

async function load(f, mode, extra, durationS) {
  const args = [LOAD, "--url", `${f.daemon.apiUrl}/v1/${mode}`, "--ca", f.rootsFile, "--connections", String(CONNECTIONS), "--duration", String(durationS), ...extra];
  const r = await runBounded(process.execPath, args, { timeoutMs: (durationS + 30) * 1000 });
  const m = r.stdout.match(/^LOAD_JSON (.*)$/m);
  if (!m) throw new Error(`no https-load result for ${mode} (exit ${r.code}${r.timedOut ? ", timed out" : ""}): ${lastLine(r.stderr || r.stdout)}`);
  return JSON.parse(m[1]);
}

function problem(r) {
  if (r.requests === 0) return `no request completed${r.first_error ? ` (${r.first_error})` : ""}`;
  if (r.non2xx > 0) return `${r.non2xx} non-2xx responses (${JSON.stringify(r.statuses)}; first: ${r.first_error})`;
  if (r.errors > 0) return `${r.errors} socket errors (first: ${r.first_error})`;
  return null;
}
