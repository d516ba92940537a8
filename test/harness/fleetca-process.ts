import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import pg from "pg";
import { FLEETCA_BIN } from "./paths.js";
import { loadConfig, passphraseFrom } from "../../src/config/load.js";
import type { OpenedCa } from "../../src/cli/data-dir.js";
import { openCa } from "../../src/cli/open-ca.js";
import { pgConnection } from "../../src/storage/postgres/pg-pool.js";
import { signAudience } from "../../src/cli/token-audience.js";
import { bootstrapSettingsFor } from "../../src/cli/provisioners.js";
import { createBootstrapToken } from "../../src/attestation/bootstrap.js";
import { parseDuration } from "../../src/core/duration.js";
import { systemClock } from "../../src/core/clock.js";

const execFileAsync = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A temp directory holding a config.yaml and a dataDir, both private to one test. */
export class CaWorkspace {
  readonly dir: string;
  readonly configPath: string;
  readonly dataDir: string;
  env: NodeJS.ProcessEnv;

  /**
   * `memoryBacked` puts the workspace on /dev/shm when the machine has it: the same SQLite file
   * and fsync calls, without a disk's fsync latency, for tests that commit thousands of rows.
   */
  /** `listen`: more keys of the listen map, as YAML flow entries (e.g. `publicWorkers: 2`). */
  constructor(opts: { extraConfig?: string; passphrase?: string; memoryBacked?: boolean; listen?: string } = {}) {
    const base = opts.memoryBacked && existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
    this.dir = mkdtempSync(join(base, "fleetca-test-"));
    this.dataDir = join(this.dir, "ca-data");
    this.configPath = join(this.dir, "config.yaml");
    writeFileSync(
      this.configPath,
      `dataDir: ${this.dataDir}\nlisten: { api: "127.0.0.1:0", public: "127.0.0.1:0"${opts.listen ? `, ${opts.listen}` : ""} }\n${opts.extraConfig ?? ""}`,
    );
    this.env = { ...process.env, FLEETCA_PASSPHRASE: opts.passphrase ?? "" };
    delete this.env.FLEETCA_CONFIG;
  }

  /** Runs the real CLI; never throws on a non-zero exit. */
  async cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
    try {
      const r = await execFileAsync(process.execPath, [FLEETCA_BIN, ...args, "--config", this.configPath], {
        env: { ...this.env, ...env },
        cwd: this.dir,
      });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof err.code === "number" ? err.code : 1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
    }
  }

  /**
   * What `fleetca token create --sub … --san … [--aud U] [--ttl D] [--provisioner P] [--admin]` prints,
   * minted in-process by the same code (createBootstrapToken) instead of spawning the CLI for
   * every certificate a test issues (~0.5 s each); tests of the command itself use `cli()`.
   */
  async token(sub: string, sans: string[], extra: string[] = []): Promise<string> {
    // `--admin` is a flag; the others take a value.
    const admin = extra.includes("--admin");
    const args = extra.filter((a) => a !== "--admin");
    const opt = (name: string) => {
      const i = args.indexOf(name);
      return i >= 0 ? args[i + 1] : undefined;
    };
    const known = new Set(["--aud", "--ttl", "--provisioner"]);
    if (args.some((a, i) => i % 2 === 0 && !known.has(a))) throw new Error(`ws.token: unsupported option in ${extra.join(" ")}`);
    const { config } = loadConfig(this.configPath, this.env);
    const bootstrap = config.provisioners.flatMap((p) => (p.type === "bootstrap" ? [p] : []));
    const name = opt("--provisioner");
    const prov = name ? bootstrap.find((p) => p.name === name) : bootstrap[0];
    if (!prov) throw new Error(`token create failed: no bootstrap provisioner ${name ?? ""}`);
    // The data directory is opened (the KEK derived) once per workspace and passphrase.
    const pass = this.env.FLEETCA_PASSPHRASE ?? "";
    if (!this.#opened || this.#opened.pass !== pass || this.#opened.dir !== config.dataDir) {
      this.#closeOpened();
      // One open shared by concurrent callers (a promise), whichever storage the config names.
      this.#opened = { pass, dir: config.dataDir, dd: openCa(config, passphraseFrom(config, this.env), { create: false }) };
    }
    const dd = await this.#opened.dd;
    const jwt = await createBootstrapToken(
      bootstrapSettingsFor(config, prov),
      dd.caKeys,
      dd.storage.operations,
      { subject: sub, sans, ttlMs: parseDuration(opt("--ttl") ?? "5m"), audience: opt("--aud") ?? signAudience(config), admin },
      systemClock,
    );
    return jwt.reveal();
  }

  #opened: { pass: string; dir: string; dd: Promise<OpenedCa> } | null = null;

  #closeOpened(): void {
    void this.#opened?.dd.then((dd) => dd.storage.close()).catch(() => {});
    this.#opened = null;
  }

  /** Row counts of every table a request could write to. */
  rowCounts(): Record<string, number> {
    const db = new Database(join(this.dataDir, "fleetca.db"), { readonly: true });
    try {
      const count = (t: string) => db.prepare(`SELECT COUNT(*) FROM ${t}`).pluck().get() as number;
      return {
        certificates: count("certificates"),
        used_tokens: count("used_tokens"),
        idempotency_keys: count("idempotency_keys"),
      };
    } finally {
      db.close();
    }
  }

  /**
   * rowCounts() on whichever storage the workspace's config names: the SQLite file in dataDir, or
   * the PostgreSQL database of storage.url (one connection, made as the daemon makes its own).
   */
  async storedRowCounts(): Promise<Record<string, number>> {
    const { config } = loadConfig(this.configPath, this.env);
    if (config.storage.type === "sqlite") return this.rowCounts();
    const client = new pg.Client(pgConnection(config.storage));
    await client.connect();
    try {
      const { rows } = await client.query<{ certificates: string; used_tokens: string; idempotency_keys: string }>(
        `SELECT (SELECT COUNT(*) FROM certificates) AS certificates, (SELECT COUNT(*) FROM used_tokens) AS used_tokens,
                (SELECT COUNT(*) FROM idempotency_keys) AS idempotency_keys`,
      );
      const r = rows[0]!;
      return { certificates: Number(r.certificates), used_tokens: Number(r.used_tokens), idempotency_keys: Number(r.idempotency_keys) };
    } finally {
      await client.end();
    }
  }

  async start(env: NodeJS.ProcessEnv = {}): Promise<DaemonProcess> {
    return DaemonProcess.start(this, env);
  }

  remove(): void {
    this.#closeOpened();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `fleetca serve` as a child process; URLs read from its first log lines (SPEC.md). */
export class DaemonProcess {
  output = "";
  private constructor(
    readonly child: ChildProcess,
    readonly apiUrl: string,
    readonly publicUrl: string,
    outputSoFar: string,
  ) {
    this.output = outputSoFar;
    child.stdout!.on("data", (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (this.output += d.toString()));
  }

  static start(ws: CaWorkspace, env: NodeJS.ProcessEnv): Promise<DaemonProcess> {
    const child = spawn(process.execPath, [FLEETCA_BIN, "serve", "--config", ws.configPath], {
      env: { ...ws.env, ...env },
      cwd: ws.dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`daemon did not start:\n${out}`));
      }, 30_000);
      const onData = (d: Buffer) => {
        out += d.toString();
        const api = /msg="api listening" url=(\S+)/.exec(out);
        const pub = /msg="public listening" url=(\S+)/.exec(out);
        if (api && pub) {
          clearTimeout(timer);
          child.stdout!.off("data", onData);
          child.stderr!.off("data", onData);
          resolve(new DaemonProcess(child, api[1]!, pub[1]!, out));
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited with ${code}:\n${out}`));
      });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      this.child.once("exit", () => resolve());
      this.child.kill("SIGTERM");
    });
  }
}
