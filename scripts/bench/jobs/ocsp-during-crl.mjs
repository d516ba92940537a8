import { join } from "node:path";
import { FleetcaDaemon, FLEETCA, benchEnv } from "../fleetca-daemon.mjs";
import { seedCertificates } from "../seed-certificates.mjs";
import { runOk, sleep } from "../processes.mjs";
import { runWrk, wrkProblem } from "../wrk.mjs";
import { round } from "../report.mjs";

/**
 * Issue 11's third CRL target: "request handling keeps answering while a large CRL is built
 * (OCSP p99 does not grow past 50 ms)". The fleet's CA gets 1,000,000 (--quick 100,000) revoked
 * rows; once the daemon has published that CRL, wrk runs the ocsp_cached load while one
 * `fleetca revoke` (another process, as an operator does it) makes the daemon rebuild the whole
 * CRL in the middle of the window. Figures: OCSP /s and p99 during the window, and the rebuild's
 * buildMs, which must fall inside it (else the job fails: it would not measure what it says).
 */
export default {
  name: "ocsp_during_crl",
  usesFleet: true,
  keys: ["ocsp_during_crl_per_s", "ocsp_during_crl_p99_ms", "ocsp_during_crl_build_s", "ocsp_quiet_p99_ms"],
  async run(ctx) {
    const f = await ctx.fleet();
    const n = ctx.opts.quick ? 100_000 : 1_000_000;
    await f.daemon.stop();
    seedCertificates(join(f.dir, "data"), { count: n, revoked: true });
    const d = await FleetcaDaemon.start(f.dir, { readyTimeoutMs: 300_000 });
    try {
      const published = await d.waitFor((l) => l.msg === "CRL published" && (l.shard === undefined || l.shard === "full") && l.entries >= n, 300_000);
      if (!published) return { status: "failed", reason: `no CRL of ${n} entries published`, figures: {} };
      // The seeded rows also get OCSP answers pre-signed after start-up: let that finish, so the
      // window below measures the CRL rebuild, not the pre-signer.
      await d.waitFor((l) => l.msg === "OCSP pre-signing finished" && l.signed >= n, 300_000);
      const url = `${d.publicUrl}/ocsp`;
      // The same load without a rebuild, for comparison.
      const quiet = await runWrk({ url, bodyFile: f.reqNoNonce, wrk: ctx.opts.wrk });
      // A window long enough for the rebuild to fall inside it even when the primary shares the
      // cores with the public workers and wrk (a 1M-entry rebuild takes ~2.5 s alone, 11 s seen
      // on a loaded machine).
      const wrk = runWrk({ url, bodyFile: f.reqNoNonce, wrk: { ...ctx.opts.wrk, durationS: Math.max(ctx.opts.wrk.durationS, ctx.opts.quick ? 10 : 30) } });
      const windowStart = d.nowMs();
      await sleep(1_000);
      await runOk(process.execPath, [FLEETCA, "revoke", f.certs[1].serial, "--reason", "superseded", "--config", d.config], { env: benchEnv(f.dir), timeoutMs: 30_000 });
      const w = await wrk;
      const windowEnd = d.nowMs();
      const bad = wrkProblem(w);
      if (bad) return { status: "failed", reason: bad, figures: {} };
      const isRebuild = (l) => l.msg === "CRL published" && (l.shard === undefined || l.shard === "full") && l.entries === published.entries + 1;
      // Waited for past the window too, so a rebuild slowed down by the load says how long it took.
      const rebuilt = await d.waitFor(isRebuild, 120_000);
      if (!rebuilt) return { status: "failed", reason: "the revocation did not rebuild the CRL within 2 min", figures: {} };
      if (!(rebuilt._atMs - rebuilt.buildMs >= windowStart && rebuilt._atMs <= windowEnd)) {
        const endedS = round((rebuilt._atMs - windowStart) / 1000, 1);
        return { status: "failed", reason: `the rebuild (${rebuilt.buildMs} ms, done ${endedS} s into the ${round((windowEnd - windowStart) / 1000, 1)} s wrk window) did not happen inside it`, figures: {} };
      }
      return {
        status: "ok",
        figures: {
          ocsp_during_crl_per_s: round(w.perS),
          ocsp_during_crl_p99_ms: round(w.p99Ms, 2),
          ocsp_during_crl_build_s: round(rebuilt.buildMs / 1000, 3),
          ocsp_quiet_p99_ms: round(quiet.p99Ms, 2),
        },
        text: `${round(w.perS)} /s, p99 ${round(w.p99Ms, 2)} ms while a CRL of ${rebuilt.entries} entries was rebuilt (${round(rebuilt.buildMs / 1000, 2)} s); without a rebuild ${round(quiet.perS)} /s, p99 ${round(quiet.p99Ms, 2)} ms`,
      };
    } finally {
      d.recordPeak();
      await d.stop();
    }
  },
};
