/**
 * A throwaway PostgreSQL cluster for the storage tests (issue 17): initdb into a temp directory,
 * pg_ctl start on a free loopback port, a `fleetca` database; stop() kills it and removes the
 * directory. It uses the machine's own PostgreSQL binaries (.ci/run installs Debian's postgresql
 * when they are missing), never a system cluster, and fails loudly when it cannot start one: a
 * storage test that quietly skipped PostgreSQL would claim coverage it does not have.
 */
import { execFile, execFileSync } from "node:child_process";
import { accessSync, chmodSync, chownSync, constants, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);

export interface TestPostgres {
  /** postgres://fleetca@127.0.0.1:PORT/fleetca: the bootstrap superuser, no password (trust, loopback only). */
  url: string;
  /** The same cluster, another database on it (created by createDatabase). */
  urlOf(database: string): string;
  /** CREATE DATABASE `name` (a fresh, empty one per test) and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server as a crash would (-m immediate), keeping its data: "the database is down". */
  pause(): Promise<void>;
  /** Starts it again on the same port, with what it had committed. */
  resume(): Promise<void>;
  stop(): Promise<void>;
  /**
   * A superuser connection over the cluster's Unix socket (trust), to `database`: it works
   * whatever the TCP rules (a hostssl-only cluster refuses plaintext on 127.0.0.1).
   */
  socketConfig(database: string): pg.ClientConfig;
  /**
   * Only for a cluster started with `tls`: serves another certificate and key from the next
   * connection on (PostgreSQL re-reads them on a configuration reload, pg_reload_conf()).
   */
  replaceTlsCertificate(certFile: string, keyFile: string): Promise<void>;
}

/** TLS for the cluster: the server's certificate and key (PEM files; copied into the cluster's directory). */
export interface TestPostgresTls {
  certFile: string;
  keyFile: string;
  /** CA certificates client certificates must chain to (ssl_ca_file), for `cert` authentication. */
  clientCaFile?: string;
  /** pg_hba.conf lines replacing initdb's (which allow plaintext); the socket's `local all all trust` is kept first. */
  hba?: string[];
}

/** Clusters not stopped yet: killed at process exit, should a test worker end without stop(). */
const running = new Set<() => void>();
let exitHookInstalled = false;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The directory holding initdb, pg_ctl and postgres of one installation: initdb's on PATH if there
 * is one (symlinks resolved, so pg_ctl comes from the same version), else Debian's
 * /usr/lib/postgresql/<version>/bin of the highest version (Debian keeps them off PATH).
 */
export function postgresBinDir(): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const initdb = join(dir, "initdb");
    if (!executable(initdb)) continue;
    const real = dirname(realpathSync(initdb));
    if (executable(join(real, "pg_ctl"))) return real;
  }
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => executable(join(root, v, "bin", "initdb"))) : [];
  versions.sort((a, b) => parseFloat(b) - parseFloat(a));
  if (versions.length === 0) {
    throw new Error("PostgreSQL not found: no initdb on PATH nor in /usr/lib/postgresql/*/bin (.ci/run installs Debian's postgresql)");
  }
  return join(root, versions[0]!, "bin");
}

/** A port free on 127.0.0.1 a moment ago (the kernel's pick for port 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** The uid and gid of the `postgres` OS user, which the cluster runs as when we are root. */
function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("running as root, and there is no postgres user to run PostgreSQL as (PostgreSQL refuses to run as root)");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * `tls`: the cluster also speaks TLS (ssl=on) with that certificate; with `tls.hba`, only what
 * those lines allow (e.g. hostssl only, so a plaintext connection is refused). Without it, as
 * before: plaintext, trust on loopback.
 */
export async function startPostgres(opts: { tls?: TestPostgresTls } = {}): Promise<TestPostgres> {
  const bin = postgresBinDir();
  const dir = mkdtempSync(join(tmpdir(), "fleetca-pg-"));
  const data = join(dir, "data");
  const log = join(dir, "postgres.log");
  // PostgreSQL refuses to run as root (its docs, "The PostgreSQL User Account"); CI and this
  // machine run tests as root, so the cluster runs as the postgres user, which owns the directory.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { uid, gid } = postgresUser();
    chownSync(dir, uid, gid);
  }
  const command = (file: string, args: string[]): [string, string[]] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, file), ...args]] : [join(bin, file), args];
  const pgctl = async (args: string[]): Promise<void> => {
    const [file, argv] = command("pg_ctl", args);
    await run(file, argv, { timeout: 90_000 });
  };
  const stopSync = (): void => {
    try {
      const [file, argv] = command("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      execFileSync(file, argv, { stdio: "ignore", timeout: 30_000 });
    } catch {
      // not running
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    // -A trust: no password, which is fine for a cluster that listens on 127.0.0.1 and a socket
    // in its own directory, and lives for one test file. --locale=C: every machine has it.
    // --no-sync: a throwaway need not survive a power cut.
    const [file, argv] = command("initdb", ["-D", data, "-A", "trust", "-U", "fleetca", "-E", "UTF8", "--locale=C", "--no-sync"]);
    await run(file, argv, { timeout: 90_000 });
    const owner = asRoot ? postgresUser() : null;
    const tlsOptions = opts.tls ? installTls(dir, data, opts.tls, owner) : "";

    // A port free a moment ago may be taken by the time the postmaster binds it (other test files
    // pick ports too): try again with another.
    let port = 0;
    // -l: the postmaster's output goes to the log file, not to pipes that execFile would wait
    // on after pg_ctl itself has exited. -k: the Unix socket in our directory, not
    // /var/run/postgresql (where a system cluster may be). fsync=off: as --no-sync.
    const options = () => `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off${tlsOptions}`;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await pgctl(["-D", data, "-l", log, "-w", "-t", "60", "-o", options(), "start"]);
        break;
      } catch (e) {
        const why = existsSync(log) ? readFileSync(log, "utf8") : "";
        if (attempt < 3 && /could not bind|Address already in use/i.test(why)) continue;
        throw new Error(`pg_ctl start failed: ${(e as Error).message}\n${why}`);
      }
    }

    const base = `postgres://fleetca@127.0.0.1:${port}`;
    const urlOf = (database: string): string => `${base}/${database}`;
    const socketConfig = (database: string): pg.ClientConfig => ({ host: dir, port, user: "fleetca", database });
    const createDatabase = async (name: string): Promise<string> => {
      // Over the socket when the TCP rules are the test's (hostssl only); over TCP as always otherwise.
      const admin = new pg.Client(opts.tls?.hba ? socketConfig("postgres") : { connectionString: urlOf("postgres") });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      } finally {
        await admin.end();
      }
      return urlOf(name);
    };
    const url = await createDatabase("fleetca");

    running.add(stopSync);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once("exit", () => {
        for (const stop of running) stop();
      });
    }
    return {
      url,
      urlOf,
      createDatabase,
      socketConfig,
      async replaceTlsCertificate(certFile: string, keyFile: string) {
        if (!opts.tls) throw new Error("replaceTlsCertificate: the cluster was started without tls");
        placeFile(certFile, join(dir, "server.crt"), owner);
        placeFile(keyFile, join(dir, "server.key"), owner);
        const admin = new pg.Client(socketConfig("postgres"));
        await admin.connect();
        try {
          await admin.query("SELECT pg_reload_conf()");
        } finally {
          await admin.end();
        }
      },
      async pause() {
        await pgctl(["-D", data, "-m", "immediate", "-w", "stop"]);
      },
      async resume() {
        await pgctl(["-D", data, "-l", log, "-w", "-t", "60", "-o", options(), "start"]);
      },
      async stop() {
        running.delete(stopSync);
        // -m immediate: no checkpoint, nothing to keep.
        await pgctl(["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    stopSync();
    throw e;
  }
}

/**
 * Copies the certificate and key into the cluster's directory, owned by the user the server runs
 * as and 0600 (PostgreSQL refuses a key file others can read, or one owned by another user unless
 * root owns it with 0640: docs, "Secure TCP/IP Connections with SSL"), writes the pg_hba.conf
 * asked for, and returns the server options that turn TLS on.
 */
function installTls(dir: string, data: string, tls: TestPostgresTls, owner: { uid: number; gid: number } | null): string {
  const place = (from: string, name: string): string => placeFile(from, join(dir, name), owner);
  const cert = place(tls.certFile, "server.crt");
  const key = place(tls.keyFile, "server.key");
  let options = ` -c ssl=on -c ssl_cert_file=${cert} -c ssl_key_file=${key}`;
  if (tls.clientCaFile) options += ` -c ssl_ca_file=${place(tls.clientCaFile, "client-ca.pem")}`;
  if (tls.hba) {
    const hba = join(data, "pg_hba.conf");
    writeFileSync(hba, ["local all all trust", ...tls.hba, ""].join("\n"));
    if (owner) chownSync(hba, owner.uid, owner.gid);
  }
  return options;
}

/** `from` copied to `to`, 0600, owned by the server's user (a key file must be; docs, "Secure TCP/IP Connections with SSL"). */
function placeFile(from: string, to: string, owner: { uid: number; gid: number } | null): string {
  copyFileSync(from, to);
  chmodSync(to, 0o600);
  if (owner) chownSync(to, owner.uid, owner.gid);
  return to;
}
