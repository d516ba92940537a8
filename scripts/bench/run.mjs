#!/usr/bin/env node
/**
 * `npm run bench [-- --quick] [-- --peers] [-- --json] [-- --only a,b]`: builds fleetca, runs the
 * benchmark jobs in jobs/ against real daemons in temp dataDirs (loopback only), optionally the
 * same jobs against peers (openssl, cfssl) in the same run, prints one table and, with --json,
 * one JSON line. Every step is time-bounded; children and temp dirs are removed on any exit.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "./args.mjs";
import { installCleanupHandlers, cleanupAll, makeTempDir } from "./cleanup.mjs";
import { ensureTools } from "./system-tools.mjs";
import { API_WORKERS, FleetcaDaemon, PUBLIC_WORKERS, REPO } from "./fleetca-daemon.mjs";
import { createFleet } from "./fleet-fixture.mjs";
import { createPeerCa } from "./peers/peer-ca.mjs";
import { printTable, ratio } from "./report.mjs";
import { JOBS } from "./jobs/index.mjs";

/** Hard bound of one job (ours or a peer's), on top of the bounds inside it. */
const JOB_BOUND_MS = { quick: 5 * 60_000, full: 20 * 60_000 };

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help) {
    console.log(`usage: npm run bench -- [--quick] [--peers] [--json] [--cpu-prof DIR] [--only ${JOBS.map((j) => j.name).join(",")}]`);
    return 0;
  }
  const jobs = opts.only ? JOBS.filter((j) => opts.only.has(j.name)) : JOBS;
  if (opts.only) {
    const unknown = [...opts.only].filter((n) => !JOBS.some((j) => j.name === n));
    if (unknown.length) throw new Error(`unknown job(s) ${unknown.join(", ")}; jobs: ${JOBS.map((j) => j.name).join(", ")}`);
  }
  installCleanupHandlers();
  if (opts.cpuProf) mkdirSync(resolve(opts.cpuProf), { recursive: true });
  ensureTools(["wrk", "openssl", ...(opts.peers ? ["cfssl", "unshare", "ip"] : [])]);
  const log = (m) => console.error(`bench: ${m}`);
  log("building (npm run build)");
  const b = spawnSync("npm", ["run", "build", "--silent"], { cwd: REPO, stdio: ["ignore", "inherit", "inherit"], timeout: 300_000 });
  if (b.status !== 0) throw new Error(`npm run build failed (exit ${b.status})`);

  let fleet = null;
  let peerCa = null;
  const daemonsOfJob = [];
  const ctx = {
    opts,
    log,
    tempDir: makeTempDir,
    // The OCSP jobs' daemon too runs under --cpu-prof when asked (its public workers inherit it).
    fleet: () => (fleet ??= createFleet(log, opts.cpuProf ? { nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${resolve(opts.cpuProf)}`] } : {})),
    peerCa: () => (peerCa ??= createPeerCa()),
    // With --cpu-prof DIR every daemon runs under `node --cpu-prof` (profile-summary.mjs reads them).
    startDaemon: async (dir, o) => {
      const nodeArgs = opts.cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${resolve(opts.cpuProf)}`] : [];
      const d = new FleetcaDaemon(dir, { extraConfig: o?.extraConfig, nodeArgs });
      daemonsOfJob.push(d);
      if (o?.waitReady !== false) await d.waitReady(60_000);
      return d;
    },
  };

  // The machine is shared: the load average before and after says how noisy this run was.
  const loadBefore = loadavg()[0].toFixed(2);
  const results = {};
  const rows = [];
  const lastFleetJob = jobs.findLastIndex((j) => j.usesFleet);
  for (const [i, job] of jobs.entries()) {
    for (const k of job.keys) results[k] = null;
    log(`job ${job.name}`);
    const t0 = Date.now();
    const ours = await bounded(job.run(ctx), opts);
    await stopAll(daemonsOfJob);
    Object.assign(results, ours.figures);
    const row = { job: job.name, ours: cell(ours) };
    if (i === lastFleetJob && fleet) await (await fleet.catch(() => null))?.daemon.stop();
    if (opts.peers && job.peer) {
      log(`peer ${job.peer.name}`);
      const p = await bounded(job.peer.run(ctx), opts);
      Object.assign(results, p.figures);
      row.peer = p.status === "ok" ? `${job.peer.name}: ${p.text}` : `peer n/a: ${p.reason ?? p.status}`;
      const parts = [];
      for (const r of job.ratios ?? []) {
        results[r.key] = ratio(results[r.ours], results[r.peer]);
        if (results[r.key] !== null) parts.push(`${results[r.key]} (${r.target})`);
      }
      row.ratio = parts.join(", ");
    } else if (opts.peers) {
      row.peer = "(no peer)";
    }
    for (const r of opts.peers ? (job.ratios ?? []) : []) results[r.peer] ??= null;
    // A job with an absolute target (no peer to divide by) says where it stands in the same column.
    const own = job.target && ours.status === "ok" ? job.target(ours.figures) : "";
    if (own) row.ratio = row.ratio ? `${row.ratio}, ${own}` : own;
    // Ratios to another job's figure of this same run (sign_pg_* over sign_16: one machine, one load).
    for (const r of job.inRunRatios ?? []) {
      results[r.key] = ratio(results[r.ours], results[r.base]);
      const text = results[r.key] === null ? "" : `${results[r.key]} ${r.label}`;
      if (text) row.ratio = row.ratio ? `${row.ratio}, ${text}` : text;
    }
    row.notes = `${Math.round((Date.now() - t0) / 1000)} s`;
    rows.push(row);
  }
  if (fleet) await (await fleet.catch(() => null))?.daemon.stop();

  console.log("");
  console.log(`fleetca bench ${new Date().toISOString()} (node ${process.version}, ${opts.quick ? "--quick, " : ""}wrk -t${opts.wrk.threads} -c${opts.wrk.connections} -d${opts.wrk.durationS}s, listen.publicWorkers ${PUBLIC_WORKERS}, apiWorkers ${API_WORKERS}, load average ${loadBefore} before, ${loadavg()[0].toFixed(2)} after)`);
  printTable(rows);
  if (opts.json) console.log(JSON.stringify({ date: new Date().toISOString(), quick: opts.quick, peers: opts.peers, ...results }));
  return 0;
}

/** A job's figure, or FAILED / n/a with the reason. */
function cell(r) {
  if (r.status === "ok") return r.text;
  if (r.status === "n/a") return `n/a (${r.reason})`;
  return `FAILED (${r.reason})`;
}

/** Runs one job under the hard bound; a throw or a timeout becomes a FAILED result, not the end of the run. */
async function bounded(promise, opts) {
  const ms = opts.quick ? JOB_BOUND_MS.quick : JOB_BOUND_MS.full;
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`job exceeded ${ms / 1000} s`)), ms))),
    ]);
  } catch (e) {
    return { status: "failed", reason: String(e?.message ?? e).split("\n")[0].slice(0, 300), figures: {} };
  } finally {
    clearTimeout(timer);
  }
}

async function stopAll(daemons) {
  while (daemons.length) await daemons.pop().stop();
}

main()
  .then((code) => {
    cleanupAll();
    process.exit(code);
  })
  .catch((e) => {
    console.error(`bench: ${e?.message ?? e}`);
    cleanupAll();
    process.exit(1);
  });
