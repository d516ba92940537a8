import { spawn } from "node:child_process";
import { trackChild, killGroup } from "./cleanup.mjs";

/**
 * Runs a command to completion with a hard time bound (every bench step is bounded), capturing
 * output. Resolves with { code, stdout, stderr, ms, timedOut }; never rejects on a non-zero exit.
 */
export function runBounded(cmd, args, { timeoutMs, cwd, env, input, stdout = "pipe" } = {}) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = trackChild(spawn(cmd, args, { cwd, env: env ?? process.env, detached: true, stdio: [input === undefined ? "ignore" : "pipe", stdout, "pipe"] }));
    let out = "";
    let err = "";
    child.stdout?.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    if (input !== undefined) child.stdin.end(input);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs ?? 60_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      resolve({ code, stdout: out, stderr: err, ms, timedOut });
    });
  });
}

/** Like runBounded but throws with the tail of stderr when the command fails or times out. */
export async function runOk(cmd, args, opts) {
  const r = await runBounded(cmd, args, opts);
  if (r.timedOut) throw new Error(`${cmd} ${args[0] ?? ""} timed out after ${opts?.timeoutMs ?? 60_000} ms`);
  if (r.code !== 0) throw new Error(`${cmd} ${args.slice(0, 2).join(" ")} exited ${r.code}: ${lastLine(r.stderr || r.stdout)}`);
  return r;
}

export function lastLine(s) {
  const lines = String(s).trim().split("\n").filter(Boolean);
  return (lines[lines.length - 1] ?? "").slice(0, 300);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
