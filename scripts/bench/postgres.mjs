/**
 * A throwaway PostgreSQL cluster for the PostgreSQL issuance jobs (issue 17), made as
 * test/harness/postgres.ts makes the tests' (initdb into a temp dir, the machine's own binaries,
 * as the `postgres` OS user when we are root, loopback only, its socket in its own directory,
 * never a system cluster), with one difference: durability stays ON (fsync, synchronous_commit,
 * full_page_writes at their defaults), because a bench measures what a deployment would get and a
 * deployment's every COMMIT waits for its WAL flush. The tests turn it off; a bench must not.
 *
 * `postgres` itself is the tracked child (no pg_ctl, which daemonizes it): cleanup.mjs then kills
 * its process group before removing the temp dir on any exit of the harness, as for every daemon.
 */
import { spawn } from "node:child_process";
import { accessSync, chownSync, constants, existsSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { trackChild, killGroup, removeTempDir } from "./cleanup.mjs";
import { freeLoopbackPort } from "./ports.mjs";
import { runOk, sleep } from "./processes.mjs";
import { aptInstall } from "./system-tools.mjs";

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The directory holding initdb and postgres of one installation: initdb's on PATH (symlinks
 * resolved, so postgres comes from the same version), else Debian's /usr/lib/postgresql/<v>/bin
 * of the highest version (Debian keeps them off PATH); null when there is none.
 */
function findBinDir() {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir || !executable(join(dir, "initdb"))) continue;
    const real = dirname(realpathSync(join(dir, "initdb")));
    if (executable(join(real, "postgres"))) return real;
  }
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => executable(join(root, v, "bin", "initdb"))) : [];
  versions.sort((a, b) => parseFloat(b) - parseFloat(a));
  return versions.length ? join(root, versions[0], "bin") : null;
}

/**
 * As ensureTools does for wrk or cfssl (system-tools.mjs): missing binaries are installed from
 * Debian (`postgresql`, as .ci/run does; its own cluster is not used), and still missing after
 * that is an error: the job is FAILED in the table, never quietly left out.
 */
export function postgresBinDir() {
  let bin = findBinDir();
  if (bin) return bin;
  aptInstall(["postgresql"], ["initdb", "postgres"]);
  bin = findBinDir();
  if (!bin) throw new Error("PostgreSQL not found after apt-get install postgresql: no initdb on PATH nor in /usr/lib/postgresql/*/bin");
  return bin;
}

/** The uid and gid of the `postgres` OS user: PostgreSQL refuses to run as root. */
function postgresUser() {
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("running as root, and there is no postgres user to run PostgreSQL as (PostgreSQL refuses to run as root)");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Starts a cluster in a new temp dir and creates database `fleetca`. Returns
 * { url, version, pool(), cpuTicks(), stop() }: url is postgres://fleetca@127.0.0.1:PORT/fleetca
 * (trust authentication: loopback and a socket in our own directory only).
 */
export async function startBenchPostgres(ctx, label) {
  const bin = postgresBinDir();
  const dir = ctx.tempDir(`${label}-pg`);
  const data = join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { uid, gid } = postgresUser();
    chownSync(dir, uid, gid);
  }
  const command = (file, args) => (asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, file), ...args]] : [join(bin, file), args]);
  const [initdb, initArgs] = command("initdb", ["-D", data, "-A", "trust", "-U", "fleetca", "-E", "UTF8", "--locale=C"]);
  await runOk(initdb, initArgs, { timeoutMs: 120_000 });

  // A port free a moment ago may be taken when the postmaster binds it: try another.
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    const server = new Server(command("postgres", ["-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1"]));
    const url = `postgres://fleetca@127.0.0.1:${port}`;
    try {
      await server.waitAccepting(`${url}/postgres`, 60_000);
    } catch (e) {
      await server.stop();
      if (attempt < 3 && /could not bind|already in use/i.test(server.tail.join("\n"))) continue;
      throw e;
    }
    const admin = new pg.Client({ connectionString: `${url}/postgres` });
    await admin.connect();
    let version;
    try {
      await admin.query("CREATE DATABASE fleetca");
      // Said in the job's text: what a reader of the figures must know about this cluster.
      const settings = await admin.query("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'server_version')");
      const s = Object.fromEntries(settings.rows.map((r) => [r.name, r.setting]));
      if (s.fsync !== "on" || s.synchronous_commit !== "on") throw new Error(`bench cluster must be durable, has fsync=${s.fsync} synchronous_commit=${s.synchronous_commit}`);
      version = s.server_version;
    } finally {
      await admin.end();
    }
    ctx.log(`${label}: PostgreSQL ${version} on 127.0.0.1:${port} (fsync on, synchronous_commit on), data in ${data}`);
    return {
      url: `${url}/fleetca`,
      version,
      cpuTicks: () => server.cpuTicks(),
      watch: () => watchDatabase(`${url}/fleetca`),
      async stop() {
        await server.stop();
        removeTempDir(dir);
      },
    };
  }
}

/**
 * What the database's sessions do during a timed window, to say what limits throughput: every
 * 100 ms, the fleetca sessions of pg_stat_activity that are busy ("active", or "idle in
 * transaction": a transaction open while the daemon works between statements) are counted by
 * wait event ("Lock:advisory" is waiting for the issuance log's append turn, pg-append-lock.ts;
 * "IO:WALSync" / "LWLock:WALWrite" is waiting for a COMMIT's flush; none is running on a CPU);
 * and the commits and WAL flushes (pg_stat_database, pg_stat_wal) over the window tell how many
 * commits each fsync carried. One connection of its own; its queries are a few per 100 ms.
 *
 * Returns { endWindow() → { samples, busyPerSample, waits: [[event, share of busy samples]] },
 * totals() → { commits, walSyncs }, close() }. Call totals() after the daemons have stopped: a backend
 * sends its counters to the statistics system at most once a second while busy and up to 10 s
 * after it went idle (PostgreSQL 15+), but always when it exits. The watcher's own queries are
 * not counted in commits.
 */
async function watchDatabase(url) {
  const c = new pg.Client({ connectionString: url });
  // Should the job fail mid-window and the server be stopped under it: an error to ignore, not a crash of the harness.
  c.on("error", () => {});
  await c.connect();
  let ended = false;
  let own = 0;
  const query = (text) => {
    own++;
    return c.query(text);
  };
  const counters = async () =>
    (await query("SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())::bigint AS commits, (SELECT wal_sync FROM pg_stat_wal)::bigint AS syncs")).rows[0];
  const before = await counters();
  const waits = new Map();
  let samples = 0;
  let busy = 0;
  let stopped = false;
  // A failed sample (the server gone under a failing job) ends the sampling; never an unhandled rejection.
  const loop = (async () => {
    while (!stopped) {
      const { rows } = await query(
        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state IN ('active', 'idle in transaction')",
      );
      samples++;
      for (const r of rows) {
        busy++;
        const k = r.state === "idle in transaction" ? "idle in transaction" : r.wait_event_type ? `${r.wait_event_type}:${r.wait_event}` : "running";
        waits.set(k, (waits.get(k) ?? 0) + 1);
      }
      await sleep(100);
    }
  })().catch(() => {});
  return {
    async endWindow() {
      stopped = true;
      await loop;
      return {
        samples,
        busyPerSample: samples ? busy / samples : 0,
        waits: [...waits].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, busy ? n / busy : 0]),
      };
    },
    async totals() {
      stopped = true;
      await loop;
      // Our own statements are transactions too (an implicit COMMIT each, no WAL): flushed now
      // (PostgreSQL 15+) so that all of them are counted, and subtracted.
      await query("SELECT pg_stat_force_next_flush()").catch(() => {});
      const ours = own;
      const after = await counters();
      ended = true;
      await c.end();
      return { commits: Number(after.commits) - Number(before.commits) - ours, walSyncs: Number(after.syncs) - Number(before.syncs) };
    },
    /** Ends the watcher's connection if totals() did not (a job that failed before it). */
    async close() {
      stopped = true;
      await loop;
      if (!ended) await c.end().catch(() => {});
      ended = true;
    },
  };
}

/** The postmaster as a tracked child, with the tail of its log for error messages. */
class Server {
  tail = [];

  constructor([cmd, args]) {
    this.child = trackChild(spawn(cmd, args, { detached: true, stdio: ["ignore", "pipe", "pipe"] }));
    for (const s of [this.child.stdout, this.child.stderr]) {
      createInterface({ input: s }).on("line", (l) => {
        this.tail.push(l);
        if (this.tail.length > 40) this.tail.shift();
      });
    }
    this.child.on("close", () => (this.closed = true));
  }

  async waitAccepting(url, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.closed) throw new Error(`postgres exited (${this.child.exitCode ?? this.child.signalCode}): ${this.tail.slice(-3).join(" | ")}`);
      const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
      try {
        await c.connect();
        await c.end();
        return;
      } catch {
        await c.end().catch(() => {});
      }
      if (Date.now() >= deadline) throw new Error(`postgres not accepting after ${timeoutMs} ms: ${this.tail.slice(-3).join(" | ")}`);
      await sleep(200);
    }
  }

  /**
   * utime+stime (clock ticks) of the postmaster and its children now (its backends, WAL writer,
   * checkpointer…), found through /proc: with runuser in between, the postmaster is our child's child.
   */
  cpuTicks() {
    const pids = [];
    const walk = (pid) => {
      pids.push(pid);
      try {
        const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
        if (kids) for (const k of kids.split(/\s+/)) walk(Number(k));
      } catch {
        /* gone */
      }
    };
    walk(this.child.pid);
    let total = 0;
    for (const pid of pids) {
      try {
        const f = readFileSync(`/proc/${pid}/stat`, "utf8");
        const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
        total += Number(rest[11]) + Number(rest[12]);
      } catch {
        /* gone between the two reads */
      }
    }
    return total;
  }

  /** Fast shutdown (SIGINT: open transactions roll back, no waiting for clients), SIGKILL after 10 s. */
  async stop() {
    if (this.closed) return;
    killGroup(this.child, "SIGINT");
    for (let i = 0; i < 100 && !this.closed; i++) await sleep(100);
    if (!this.closed) killGroup(this.child, "SIGKILL");
    for (let i = 0; i < 20 && !this.closed; i++) await sleep(50);
  }
}
