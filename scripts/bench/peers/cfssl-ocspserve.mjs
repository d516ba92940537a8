import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { trackChild, killGroup } from "../cleanup.mjs";
import { runOk } from "../processes.mjs";
import { freeLoopbackPort, waitForPort } from "../ports.mjs";
import { checkOcspAnswer } from "../ocsp-check.mjs";
import { runWrk, wrkProblem } from "../wrk.mjs";
import { round } from "../report.mjs";

/**
 * Peer of ocsp_cached: `cfssl ocspserve` answering from a responses file (pre-signed bytes in
 * memory, the same idea as fleetca's no-nonce path). Its answer is made with `cfssl ocspsign`.
 * POST only: this cfssl's GET handling is broken.
 */
export default {
  name: "cfssl ocspserve",
  async run(ctx) {
    const ca = await ctx.peerCa();
    const signed = await runOk("cfssl", ["ocspsign", "-ca", ca.caPem, "-responder", ca.caPem, "-responder-key", ca.caKey, "-cert", ca.leafPem, "-status", "good"], { timeoutMs: 20_000 });
    const responses = join(ca.dir, "cfssl-responses.txt");
    writeFileSync(responses, JSON.parse(signed.stdout).ocspResponse + "\n");
    const port = await freeLoopbackPort();
    const child = trackChild(spawn("cfssl", ["ocspserve", "-address", "127.0.0.1", "-port", String(port), "-responses", responses, "-loglevel", "3"], { detached: true, stdio: "ignore" }));
    try {
      await waitForPort(port, 10_000);
      const url = `http://127.0.0.1:${port}/`;
      await checkOcspAnswer({ url, reqFile: ca.reqNoNonce, issuer: ca.caPem, cert: ca.leafPem, caFile: ca.caPem, dir: ca.dir });
      const w = await runWrk({ url, bodyFile: ca.reqNoNonce, wrk: ctx.opts.wrk });
      const bad = wrkProblem(w);
      if (bad) return { status: "failed", reason: bad, figures: {} };
      return { status: "ok", figures: { peer_ocsp_cached_per_s: round(w.perS), peer_ocsp_cached_p99_ms: round(w.p99Ms, 2) }, text: `${round(w.perS)} /s, p99 ${round(w.p99Ms, 2)} ms` };
    } finally {
      killGroup(child);
    }
  },
};
