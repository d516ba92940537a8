import { rmSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Everything the run must undo: child process groups and temp dirs. Children are spawned
 * detached (own process group) so one kill(-pgid) also ends what they started (unshare → sh →
 * openssl/wrk), and nothing survives a failed or interrupted run on a shared 2-core machine.
 */
const children = new Set();
const dirs = new Set();

export function trackChild(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

export function makeTempDir(label) {
  const d = mkdtempSync(join(tmpdir(), `fleetca-bench-${label}-`));
  dirs.add(d);
  return d;
}

export function removeTempDir(d) {
  rmSync(d, { recursive: true, force: true });
  dirs.delete(d);
}

export function killGroup(child, signal = "SIGKILL") {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try { child.kill(signal); } catch { /* already gone */ }
  }
}

export function cleanupAll() {
  for (const c of children) killGroup(c);
  children.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/** Runs cleanup on normal exit, on Ctrl-C / SIGTERM and on a crash of the harness itself. */
export function installCleanupHandlers() {
  process.on("exit", cleanupAll);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, cleaning up\n`);
      cleanupAll();
      process.exit(130);
    });
  }
  process.on("uncaughtException", (e) => {
    process.stderr.write(`bench: ${e?.stack ?? e}\n`);
    cleanupAll();
    process.exit(1);
  });
}
