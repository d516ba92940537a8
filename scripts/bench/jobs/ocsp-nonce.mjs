import { checkOcspAnswer } from "../ocsp-check.mjs";
import { runWrk, wrkProblem } from "../wrk.mjs";
import { round } from "../report.mjs";
import opensslResponder from "../peers/openssl-ocsp-responder.mjs";

/**
 * A request with a nonce (RFC 9654): the daemon must sign a fresh answer for each. wrk sends the
 * very same bytes every time, which is fine: the server cannot tell, and signs per request.
 */
export default {
  name: "ocsp_nonce",
  usesFleet: true,
  keys: ["ocsp_nonce_per_s", "ocsp_nonce_p99_ms"],
  async run(ctx) {
    const f = await ctx.fleet();
    const url = `${f.daemon.publicUrl}/ocsp`;
    await checkOcspAnswer({ url, reqFile: f.reqNonce, issuer: f.chain, cert: f.cert0, caFile: f.roots, dir: f.dir, nonce: true });
    const w = await runWrk({ url, bodyFile: f.reqNonce, wrk: ctx.opts.wrk });
    const bad = wrkProblem(w);
    if (bad) return { status: "failed", reason: bad, figures: {} };
    return {
      status: "ok",
      figures: { ocsp_nonce_per_s: round(w.perS), ocsp_nonce_p99_ms: round(w.p99Ms, 2) },
      text: `${round(w.perS)} /s, p99 ${round(w.p99Ms, 2)} ms`,
    };
  },
  peer: opensslResponder,
  ratios: [{ key: "ratio_ocsp_nonce_per_s", ours: "ocsp_nonce_per_s", peer: "peer_ocsp_nonce_per_s", target: "≥ 1" }],
};
