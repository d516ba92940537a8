import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { trackChild, killGroup } from "./cleanup.mjs";
import { sleep } from "./processes.mjs";

export const REPO = resolve(import.meta.dirname, "../..");
export const FLEETCA = join(REPO, "dist/cli/fleetca.js");

/** Highest VmHWM (kB) seen over every daemon of this run: the rss_peak_mb figure. */
let peakHwmKb = 0;
export const peakRssMb = () => (peakHwmKb > 0 ? peakHwmKb / 1024 : null);

/**
 * Public workers the bench daemons run (config listen.publicWorkers): one per core, as an
 * operator would run fleetca for OCSP; FLEETCA_BENCH_PUBLIC_WORKERS=0 measures the single process.
 */
export const PUBLIC_WORKERS = Number(process.env.FLEETCA_BENCH_PUBLIC_WORKERS ?? availableParallelism());
/**
 * API workers (config listen.apiWorkers): none by default, as the product's default: on this
 * 2-core machine, where wrk and the load generators take the other core, they measured no gain
 * (docs/benchmarks.md "Issuance after the template"); FLEETCA_BENCH_API_WORKERS=N measures them.
 */
export const API_WORKERS = Number(process.env.FLEETCA_BENCH_API_WORKERS ?? 0);

/**
 * Writes a config for a throwaway CA: both listeners on 127.0.0.1:0 (loopback, any free port;
 * the daemon logs the bound URLs) and JSON logs, so the harness can read timings from them.
 * The OCSP signing budget is lifted: wrk is one client, and under the default budget (50/s per
 * client) most nonce requests would be answered from the pre-signed cache without the nonce, so
 * ocsp_nonce would not measure signing. `extraLines` are more top-level YAML keys (the issuance
 * jobs add their `jwt` provisioner).
 */
export function writeConfig(dir, extraLines = []) {
  const cfg = join(dir, "config.yaml");
  writeFileSync(
    cfg,
    [`dataDir: ${join(dir, "data")}`, `listen: { api: 127.0.0.1:0, public: 127.0.0.1:0, publicWorkers: ${PUBLIC_WORKERS}, apiWorkers: ${API_WORKERS} }`, "log: { level: info, format: json }", "ocsp: { rateLimit: { perSecond: 1000000, burst: 1000000, totalPerSecond: 1000000 } }", ...extraLines, ""].join("\n"),
  );
  return cfg;
}

/**
 * A passphrase (not development mode) so every start is the production path; random per run,
 * and it only ever wraps throwaway keys in the temp dir.
 */
export function benchEnv(dir) {
  let pass;
  try {
    pass = readFileSync(join(dir, ".pass"), "utf8");
  } catch {
    pass = randomBytes(18).toString("base64url");
    writeFileSync(join(dir, ".pass"), pass, { mode: 0o600 });
  }
  return { ...process.env, FLEETCA_PASSPHRASE: pass };
}

/**
 * One real `fleetca serve` process. Its pino JSON lines are kept so jobs can wait for a given
 * message ("fleetca ready", "CRL published", …) with a deadline. Spawned as `node …/fleetca.js`
 * directly (no npm / shell in between) so its pid is the daemon's and /proc/<pid>/status is its RSS.
 */
export class FleetcaDaemon {
  lines = [];
  stderrTail = [];
  #waiters = new Set();

  static async start(dir, { readyTimeoutMs = 60_000, waitReady = true, ...o } = {}) {
    const d = new FleetcaDaemon(dir, o);
    if (waitReady) await d.waitReady(readyTimeoutMs);
    return d;
  }

  /**
   * `extraConfig`: YAML lines appended to the config. `nodeArgs`: node flags before the script
   * (`--cpu-prof --cpu-prof-dir=…` with `npm run bench -- --cpu-prof DIR`; the profile is written
   * when the daemon exits on SIGTERM, which stop() sends first).
   */
  constructor(dir, { extraConfig = [], nodeArgs = [] } = {}) {
    this.dir = dir;
    this.config = writeConfig(dir, extraConfig);
    this.startedAt = process.hrtime.bigint();
    this.child = trackChild(
      spawn(process.execPath, [...nodeArgs, FLEETCA, "serve", "--config", this.config], { env: benchEnv(dir), detached: true, stdio: ["ignore", "pipe", "pipe"] }),
    );
    this.pid = this.child.pid;
    createInterface({ input: this.child.stdout }).on("line", (l) => this.#onLine(l));
    createInterface({ input: this.child.stderr }).on("line", (l) => {
      this.stderrTail.push(l);
      if (this.stderrTail.length > 60) this.stderrTail.shift();
      this.#onLine(l);
    });
    // "close", not "exit": only then has every buffered log line been read.
    this.child.on("close", () => {
      this.closed = true;
      clearInterval(this.sampler);
      this.#wake();
    });
    // VmHWM is gone with the process: sample it every second so a daemon that dies (e.g. out of
    // memory on a 1M-entry CRL) still counts in rss_peak_mb.
    this.sampler = setInterval(() => this.recordPeak(), 1_000);
    this.sampler.unref();
  }

  get exited() {
    return this.closed === true;
  }

  /** Milliseconds since spawn at the moment a line was read. */
  #onLine(raw) {
    let rec;
    try {
      rec = JSON.parse(raw);
    } catch {
      return;
    }
    rec._atMs = Number(process.hrtime.bigint() - this.startedAt) / 1e6;
    this.lines.push(rec);
    if (rec.msg === "api listening") this.apiUrl = rec.url;
    if (rec.msg === "public listening") this.publicUrl = rec.url;
    this.#wake();
  }

  #wake() {
    for (const w of [...this.#waiters]) w();
  }

  /**
   * Resolves with the first log record matching `pred`, or null once the daemon exited or
   * `timeoutMs` passed (the caller words the failure). `idle` may end the wait early.
   */
  async waitFor(pred, timeoutMs, { giveUp } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (this.exited || Date.now() >= deadline) return null;
      if (giveUp && (await giveUp())) return null;
      // Woken by the next log line or exit; at most every 500 ms to check the deadline / giveUp.
      await new Promise((r) => {
        const fin = () => {
          clearTimeout(t);
          this.#waiters.delete(fin);
          r();
        };
        const t = setTimeout(fin, Math.max(10, Math.min(500, deadline - Date.now())));
        this.#waiters.add(fin);
      });
    }
  }

  async waitReady(timeoutMs) {
    const r = await this.waitFor((l) => l.msg === "fleetca ready", timeoutMs);
    if (!r) throw new Error(`daemon not ready: ${this.whyNot()}`);
    return r;
  }

  /** The daemon's own words for a failure: its last error record or stderr line. */
  whyNot() {
    if (!this.exited) return "still running";
    const err = [...this.lines].reverse().find((l) => l.level === "error" || l.level === "fatal" || l.level >= 50);
    // V8 aborts (heap out of memory) print "FATAL ERROR: …" followed by a native stack trace.
    const fatal = this.stderrTail.find((l) => /FATAL ERROR|out of memory/i.test(l));
    const plain = this.stderrTail.filter((l) => !l.startsWith("{") && !/^\s*\d+: 0x/.test(l)).at(-1);
    const msg = fatal ?? (err ? `${err.msg}${err.err?.message ? `: ${err.err.message}` : ""}` : plain ?? "");
    const hwm = this.peakKb ? `, peak RSS ${Math.round(this.peakKb / 1024)} MB` : "";
    return `daemon exited (${this.child.exitCode ?? this.child.signalCode}${hwm})${msg ? `: ${msg.trim().slice(0, 200)}` : ""}`;
  }

  /** The daemon's processes: the primary and its workers (listen.publicWorkers, listen.apiWorkers). */
  pids() {
    try {
      const kids = readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, "utf8").trim();
      return [this.pid, ...(kids ? kids.split(/\s+/).map(Number) : [])];
    } catch {
      return [this.pid];
    }
  }

  /** A field of /proc/<pid>/status of the primary in kB (VmRSS, VmHWM), or null once it is gone. */
  procStatusKb(field) {
    try {
      const m = readFileSync(`/proc/${this.pid}/status`, "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
      return m ? Number(m[1]) : null;
    } catch {
      return null;
    }
  }

  /**
   * The memory the daemon's processes hold together (kB): the sum of each one's PSS
   * (/proc/<pid>/smaps_rollup), which counts pages they share (node's binary and libraries, ~46 MB
   * each in VmRSS) once instead of once per process. The primary alone: its VmRSS. Null once it is gone.
   */
  memoryKb() {
    const pids = this.pids();
    if (pids.length === 1) return this.procStatusKb("VmRSS");
    let total = 0;
    for (const pid of pids) {
      try {
        total += Number(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+) kB/m)?.[1] ?? 0);
      } catch {
        if (pid === this.pid) return null;
      }
    }
    return total;
  }

  /** utime+stime in clock ticks from /proc/<pid>/stat over the daemon's processes, to tell "working" from "idle". */
  cpuTicks() {
    let total = null;
    for (const pid of this.pids()) {
      try {
        const f = readFileSync(`/proc/${pid}/stat`, "utf8");
        const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
        total = (total ?? 0) + Number(rest[11]) + Number(rest[12]);
      } catch {
        if (pid === this.pid) return null;
      }
    }
    return total;
  }

  /** Records the peak RSS, then SIGTERM (graceful: closes SQLite), SIGKILL after 10 s. */
  async stop() {
    this.recordPeak();
    if (this.exited) return;
    killGroup(this.child, "SIGTERM");
    for (let i = 0; i < 100 && !this.exited; i++) await sleep(100);
    if (!this.exited) killGroup(this.child, "SIGKILL");
    for (let i = 0; i < 20 && !this.exited; i++) await sleep(50);
  }

  /** ms since this daemon was spawned, on the same scale as every log line's `_atMs`. */
  nowMs() {
    return Number(process.hrtime.bigint() - this.startedAt) / 1e6;
  }

  /**
   * Reads the peak now (null once exited) and keeps this daemon's and the run's maximum: the
   * primary's VmHWM, or with public workers the larger of that and the processes' PSS together
   * now (sampled every second: a worker's short spike between samples is not seen).
   */
  recordPeak() {
    const primary = this.procStatusKb("VmHWM");
    const together = this.pids().length > 1 ? this.memoryKb() : null;
    const hwm = primary === null ? null : Math.max(primary, together ?? 0);
    if (hwm && hwm > (this.peakKb ?? 0)) this.peakKb = hwm;
    if (hwm && hwm > peakHwmKb) peakHwmKb = hwm;
    return hwm ?? this.peakKb ?? null;
  }
}
