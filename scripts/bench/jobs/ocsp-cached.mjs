import { checkOcspAnswer } from "../ocsp-check.mjs";
import { runWrk, wrkProblem } from "../wrk.mjs";
import { round } from "../report.mjs";
import cfsslOcspserve from "../peers/cfssl-ocspserve.mjs";

/**
 * The hot path of TLS stapling and most clients: one CertID, no nonce, answered from memory
 * with pre-signed bytes. wrk POSTs the same openssl-made request for a certificate the daemon
 * issued; any non-2xx answer fails the job.
 */
export default {
  name: "ocsp_cached",
  usesFleet: true,
  keys: ["ocsp_cached_per_s", "ocsp_cached_p99_ms"],
  async run(ctx) {
    const f = await ctx.fleet();
    const url = `${f.daemon.publicUrl}/ocsp`;
    await checkOcspAnswer({ url, reqFile: f.reqNoNonce, issuer: f.chain, cert: f.cert0, caFile: f.roots, dir: f.dir });
    const w = await runWrk({ url, bodyFile: f.reqNoNonce, wrk: ctx.opts.wrk });
    const bad = wrkProblem(w);
    if (bad) return { status: "failed", reason: bad, figures: {} };
    return {
      status: "ok",
      figures: { ocsp_cached_per_s: round(w.perS), ocsp_cached_p99_ms: round(w.p99Ms, 2) },
      text: `${round(w.perS)} /s, p99 ${round(w.p99Ms, 2)} ms`,
    };
  },
  peer: cfsslOcspserve,
  ratios: [
    { key: "ratio_ocsp_cached_per_s", ours: "ocsp_cached_per_s", peer: "peer_ocsp_cached_per_s", target: "≥ 1" },
    { key: "ratio_ocsp_cached_p99_ms", ours: "ocsp_cached_p99_ms", peer: "peer_ocsp_cached_p99_ms", target: "≤ 1" },
  ],
};
