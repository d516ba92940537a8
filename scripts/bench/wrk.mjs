import { join } from "node:path";
import { runBounded, lastLine } from "./processes.mjs";

const LUA = join(import.meta.dirname, "wrk-post.lua");
/** Walks a list of pre-made bodies (one per request): the issuance jobs. */
export const SIGN_LUA = join(import.meta.dirname, "wrk-sign.lua");

/**
 * wrk is the load generator because it is a separate native process: a Node load generator
 * (autocannon) on the same 2 cores would compete with the daemon's event loop in the same
 * runtime and measure itself as much as the server.
 *
 * Returns { perS, p99Ms, requests, non2xx, errors, line } or throws when wrk gives no result.
 * `wrap(cmd, args)` lets a peer run wrk inside its own network namespace. `script` replaces
 * wrk-post.lua (SIGN_LUA reads $BODIES.<thread> instead of one body file).
 */
export async function runWrk({ url, bodyFile, wrk, skipProbe = false, wrap, extraEnv, script = LUA }) {
  const args = [`-t${wrk.threads}`, `-c${wrk.connections}`, `-d${wrk.durationS}s`, "--timeout", "5s", "--latency", "-s", script, url];
  const env = { ...process.env, ...extraEnv, BODY: bodyFile, SKIP_PROBE: skipProbe ? "1" : "0" };
  const [cmd, argv] = wrap ? wrap("wrk", args) : ["wrk", args];
  const r = await runBounded(cmd, argv, { env, timeoutMs: (wrk.durationS + 20) * 1000 });
  const m = r.stdout.match(/^WRK_JSON (.*)$/m);
  if (!m) throw new Error(`no wrk result (exit ${r.code}${r.timedOut ? ", timed out" : ""}): ${lastLine(r.stderr || r.stdout)}`);
  const j = JSON.parse(m[1]);
  const socketErrors = j.connect_errors + j.read_errors + j.write_errors + j.timeouts;
  return {
    perS: j.requests / (j.duration_us / 1e6),
    p99Ms: j.p99_us / 1000,
    p50Ms: j.p50_us === undefined ? null : j.p50_us / 1000,
    wrapped: j.wrapped ?? 0,
    requests: j.requests,
    // wrk's errors.status: responses with a status >= 400 ("Non-2xx or 3xx" in its text report).
    non2xx: j.status_errors,
    socketErrors,
    raw: j,
  };
}

/** The verdict every wrk job applies: any failed response or no traffic at all fails the job. */
export function wrkProblem(w) {
  if (w.requests === 0) return "wrk completed no request";
  if (w.non2xx > 0) return `${w.non2xx} non-2xx responses`;
  return null;
}

/**
 * The issuance jobs' verdict: like wrkProblem, and a socket error or a timeout also fails the
 * job (a request that never got its certificate is not throughput).
 */
export function wrkStrictProblem(w) {
  return wrkProblem(w) ?? (w.socketErrors > 0 ? `${w.socketErrors} socket errors/timeouts (${JSON.stringify(w.raw)})` : null);
}
