import { startIssuanceDaemon, makeBodies, readItems, issueChecked, cpuMeter, recordProfileWindow, BODIES_PER_S } from "../issuance-fixture.mjs";
import { runWrk, wrkStrictProblem, SIGN_LUA } from "../wrk.mjs";
import { round } from "../report.mjs";
import { cfsslSignPeer } from "../peers/cfssl-serve-sign.mjs";

/**
 * `POST /v1/sign` over HTTPS keep-alive, the way a renewal storm of new hosts arrives: a fresh
 * daemon with a `jwt` provisioner (JWKS file), and before the timed window one distinct valid
 * one-time JWT and one distinct P-256 CSR per request (sign-bodies.mjs: worker threads, its own
 * process). One request is checked first (201, `openssl verify`); then `wrk -t2 -cN` walks the
 * bodies (wrk-sign.lua) for the usual duration. Any non-2xx answer, socket error or timeout
 * fails the job; so does running out of bodies (a reused token would be refused as replayed),
 * and so does a daemon that logged fewer "certificate issued" lines than wrk counted answers.
 */
function signJob({ name, connections, prefix, keys }) {
  return {
    name,
    keys,
    async run(ctx) {
      const f = await startIssuanceDaemon(ctx, name);
      const m = await signWindow(ctx, name, { ...f, daemons: [f.daemon], connections });
      if (m.problem) return { status: "failed", reason: m.problem, figures: {} };
      return { status: "ok", figures: signFigures(prefix, m), text: signText(m) };
    },
    peer: cfsslSignPeer({ connections, prefix }),
    ratios: [
      { key: `${prefix}_vs_cfssl`, ours: `${prefix}_per_s`, peer: `peer_cfssl_${prefix}_per_s`, target: "≥ 1" },
      { key: `${prefix}_vs_cfssl_db`, ours: `${prefix}_per_s`, peer: `peer_cfssl_db_${prefix}_per_s`, target: "—" },
    ],
  };
}

/**
 * The timed window of a sign job over one daemon or several replicas of one CA (`daemons`, all
 * with the bench platform's provisioner, `jwtKey`): a probe per daemon (201, `openssl verify`),
 * the bodies, then wrk with `connections`; with several daemons wrk thread k sends to daemon
 * k mod n (wrk-sign.lua $TARGETS). `during()`, if given, starts when the window starts and
 * returns a function that ends it, whose result is `during` of the answer. Returns { problem } or
 * { w, cores, bodies, issuedBy: [issuances each daemon logged in the window], during }.
 */
export async function signWindow(ctx, name, { dir, jwtKey, roots, rootsFile, daemons, connections, during }) {
  const wrk = { ...ctx.opts.wrk, connections };
  if (daemons.length > wrk.threads) throw new Error(`${daemons.length} daemons for ${wrk.threads} wrk threads: each thread sends to one`);
  for (const [i, daemon] of daemons.entries()) {
    const probe = await makeBodies(dir, { count: 1, files: 1, jwtKey, sub: `probe-${i}` });
    await issueChecked({ dir, daemon, roots, rootsFile }, readItems(`${probe.base}.0`)[0]);
  }
  const bodies = await makeBodies(dir, { count: BODIES_PER_S * wrk.durationS, files: wrk.threads, jwtKey });
  ctx.log(`${name}: ${bodies.count} tokens + CSRs made in ${round(bodies.ms / 1000, 1)} s`);
  const issuedBefore = daemons.map(countIssued);
  const cpus = daemons.map(cpuMeter);
  const endDuring = during ? await during() : null;
  const from = process.hrtime.bigint();
  const targets = daemons.length > 1 ? daemons.map((d) => new URL(d.apiUrl).host).join(",") : "";
  const w = await runWrk({ url: `${daemons[0].apiUrl}/v1/sign`, wrk, script: SIGN_LUA, extraEnv: { BODIES: bodies.base, TARGETS: targets } });
  const cores = cpus.reduce((sum, cpu) => sum + (cpu() ?? NaN), 0);
  const duringResult = endDuring ? await endDuring() : undefined;
  for (const d of daemons) recordProfileWindow(ctx, name, d, from, process.hrtime.bigint());
  const bad = wrkStrictProblem(w) ?? (w.wrapped > 0 ? `used up all ${bodies.count} pre-made bodies: raise BODIES_PER_S` : null);
  if (bad) return { problem: bad };
  // Lines still in the pipe: give the log readers a moment, then compare.
  const issuedNow = () => daemons.reduce((sum, d, i) => sum + countIssued(d) - issuedBefore[i], 0);
  await daemons[0].waitFor(() => issuedNow() >= w.requests, 5_000);
  const issued = issuedNow();
  if (issued < w.requests) return { problem: `daemon${daemons.length > 1 ? "s" : ""} logged ${issued} issuances for ${w.requests} 201 answers` };
  return { w, cores, bodies, issuedBy: daemons.map((d, i) => countIssued(d) - issuedBefore[i]), during: duringResult };
}

/** The JSON-line figures of a sign window, keys `${prefix}_per_s`, `_p50_ms`, `_p99_ms`, `_cores`. */
export function signFigures(prefix, { w, cores }) {
  return {
    [`${prefix}_per_s`]: round(w.perS),
    [`${prefix}_p50_ms`]: round(w.p50Ms, 2),
    [`${prefix}_p99_ms`]: round(w.p99Ms, 2),
    [`${prefix}_cores`]: round(cores, 2),
  };
}

export function signText({ w, cores, bodies }, daemonWord = "daemon") {
  return `${round(w.perS)} certs/s, p50 ${round(w.p50Ms, 2)} ms, p99 ${round(w.p99Ms, 2)} ms (${w.requests} issued, ${daemonWord} CPU ${round(cores, 2)} cores; ${bodies.count} bodies made in ${round(bodies.ms / 1000, 1)} s)`;
}

/** "certificate issued" records the daemon has logged so far (one per committed issuance). */
export function countIssued(daemon) {
  let n = 0;
  for (const l of daemon.lines) if (l.msg === "certificate issued") n++;
  return n;
}

export const sign16 = signJob({ name: "sign_16", connections: 16, prefix: "sign", keys: ["sign_per_s", "sign_p50_ms", "sign_p99_ms", "sign_cores"] });
export const sign64 = signJob({ name: "sign_64", connections: 64, prefix: "sign64", keys: ["sign64_per_s", "sign64_p50_ms", "sign64_p99_ms", "sign64_cores"] });
