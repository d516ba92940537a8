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
      const wrk = { ...ctx.opts.wrk, connections };
      const probe = await makeBodies(f.dir, { count: 1, files: 1, jwtKey: f.jwtKey, sub: "probe" });
      await issueChecked(f, readItems(`${probe.base}.0`)[0]);
      const bodies = await makeBodies(f.dir, { count: BODIES_PER_S * wrk.durationS, files: wrk.threads, jwtKey: f.jwtKey });
      ctx.log(`${name}: ${bodies.count} tokens + CSRs made in ${round(bodies.ms / 1000, 1)} s`);
      const issuedBefore = countIssued(f.daemon);
      const cpu = cpuMeter(f.daemon);
      const from = process.hrtime.bigint();
      const w = await runWrk({ url: `${f.daemon.apiUrl}/v1/sign`, wrk, script: SIGN_LUA, extraEnv: { BODIES: bodies.base } });
      const cores = cpu();
      recordProfileWindow(ctx, name, f.daemon, from, process.hrtime.bigint());
      const bad = wrkStrictProblem(w) ?? (w.wrapped > 0 ? `used up all ${bodies.count} pre-made bodies: raise BODIES_PER_S` : null);
      if (bad) return { status: "failed", reason: bad, figures: {} };
      // Lines still in the pipe: give the log reader a moment, then compare.
      await f.daemon.waitFor(() => countIssued(f.daemon) - issuedBefore >= w.requests, 5_000);
      const issued = countIssued(f.daemon) - issuedBefore;
      if (issued < w.requests) return { status: "failed", reason: `daemon logged ${issued} issuances for ${w.requests} 201 answers`, figures: {} };
      const figures = {
        [`${prefix}_per_s`]: round(w.perS),
        [`${prefix}_p50_ms`]: round(w.p50Ms, 2),
        [`${prefix}_p99_ms`]: round(w.p99Ms, 2),
        [`${prefix}_cores`]: round(cores, 2),
      };
      return {
        status: "ok",
        figures,
        text: `${round(w.perS)} certs/s, p50 ${round(w.p50Ms, 2)} ms, p99 ${round(w.p99Ms, 2)} ms (${w.requests} issued, daemon CPU ${round(cores, 2)} cores; ${bodies.count} bodies made in ${round(bodies.ms / 1000, 1)} s)`,
      };
    },
    peer: cfsslSignPeer({ connections, prefix }),
    ratios: [
      { key: `${prefix}_vs_cfssl`, ours: `${prefix}_per_s`, peer: `peer_cfssl_${prefix}_per_s`, target: "≥ 1" },
      { key: `${prefix}_vs_cfssl_db`, ours: `${prefix}_per_s`, peer: `peer_cfssl_db_${prefix}_per_s`, target: "—" },
    ],
  };
}

/** "certificate issued" records the daemon has logged so far (one per committed issuance). */
function countIssued(daemon) {
  let n = 0;
  for (const l of daemon.lines) if (l.msg === "certificate issued") n++;
  return n;
}

export const sign16 = signJob({ name: "sign_16", connections: 16, prefix: "sign", keys: ["sign_per_s", "sign_p50_ms", "sign_p99_ms", "sign_cores"] });
export const sign64 = signJob({ name: "sign_64", connections: 64, prefix: "sign64", keys: ["sign64_per_s", "sign64_p50_ms", "sign64_p99_ms", "sign64_cores"] });
