import { runWrk, wrkProblem } from "../wrk.mjs";
import { round } from "../report.mjs";

const PORT = 8888;

/**
 * Peer of ocsp_nonce: `openssl ocsp -index … -port …`, the single-process responder that signs
 * every answer on request. In openssl 3.0 `-port` takes only a number and binds every
 * interface, so it runs in a private network namespace (`unshare --net`, only `lo` up) together
 * with wrk: loopback-only traffic, and nothing exposed. A one-shot `openssl ocsp -url` client
 * first checks that it answers "good" and verifies; then wrk runs with SKIP_PROBE (see
 * wrk-post.lua: the responder hangs on wrk's probe connection).
 */
export default {
  name: "openssl ocsp responder",
  async run(ctx) {
    const ca = await ctx.peerCa();
    const script = [
      "set -e",
      "ip link set lo up",
      `openssl ocsp -index "$IDX" -port ${PORT} -rsigner "$CA" -rkey "$KEY" -CA "$CA" -ndays 1 >/dev/null 2>&1 &`,
      "RESP=$!",
      "trap 'kill $RESP 2>/dev/null' EXIT",
      "i=0; until openssl ocsp -issuer \"$CA\" -cert \"$LEAF\" -url http://127.0.0.1:" + PORT + " -CAfile \"$CA\" -timeout 5 > \"$CHECK\" 2>&1; do i=$((i+1)); [ $i -lt 20 ] || { echo \"peer check: $(tail -1 \"$CHECK\")\" >&2; exit 3; }; sleep 0.2; done",
      "grep -q ': good' \"$CHECK\" && grep -q 'Response verify OK' \"$CHECK\" || { echo \"peer check: answer not a verified good: $(head -2 \"$CHECK\")\" >&2; exit 3; }",
      "set +e",
      '"$@"',
    ].join("\n");
    const wrap = (cmd, args) => ["unshare", ["--net", "--", "sh", "-c", script, "sh", cmd, ...args]];
    const env = { IDX: ca.index, CA: ca.caPem, KEY: ca.caKey, LEAF: ca.leafPem, CHECK: `${ca.dir}/openssl-check.txt` };
    const w = await runWrk({ url: `http://127.0.0.1:${PORT}/`, bodyFile: ca.reqNonce, wrk: ctx.opts.wrk, skipProbe: true, wrap, extraEnv: env });
    const bad = wrkProblem(w);
    if (bad) return { status: "failed", reason: bad, figures: {} };
    return { status: "ok", figures: { peer_ocsp_nonce_per_s: round(w.perS), peer_ocsp_nonce_p99_ms: round(w.p99Ms, 2) }, text: `${round(w.perS)} /s, p99 ${round(w.p99Ms, 2)} ms` };
  },
};
