import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import type pg from "pg";
import { verifyAuditLog, type AuditVerifyReport } from "../audit/audit-verifier.js";
import type { FleetcaConfig } from "../config/schema.js";
import { NoCaError, OperatorError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import { DEV_KEK_FILE, KEK_PARAMS_FILE } from "../signing/kek.js";
import { pgAuditVerifySource } from "../storage/postgres/pg-audit-verify-source.js";
import { openPgKek } from "../storage/postgres/pg-key-store.js";
import { openPgPool } from "../storage/postgres/pg-pool.js";
import { connectRefusal, urlTlsProblem } from "../storage/postgres/pg-url-tls.js";
import { migratePostgres } from "../storage/postgres/pg-schema.js";
import { copiedTables, copySqliteToPostgres, notEmpty, targetRowCounts, type KeyMaterial } from "../storage/postgres/sqlite-to-pg-copy.js";
import type { SqliteStore } from "../storage/sqlite/sqlite-store.js";
import { DB_FILE, KEYS_DIR, openDatabase, openKeyStore } from "./data-dir.js";
import { acquireServeLock } from "./serve-lock.js";
import { liveServeState } from "./serve-state.js";

export interface MigrateStoreOptions {
  /** postgres://USER@HOST:PORT/DATABASE, no password in it. */
  to: string;
  /** A file holding the password (first line); else PGPASSWORD, as node-postgres reads it. */
  passwordFile?: string;
}

export interface MigrateStoreReport {
  source: string;
  target: string;
  /** Rows per table, equal in the source and the copy. */
  tables: Record<string, number>;
  audit: Pick<AuditVerifyReport, "ok" | "entries" | "treeHeads" | "unsigned" | "failure">;
  /** Keys in ca_keys, each unwrapped with the passphrase. */
  keysVerified: number;
  /** CRL scopes whose latest CRL is byte for byte the source's. */
  crlsVerified: number;
  /** What the config should say for the daemon to serve the copy. */
  storage: { type: "postgres"; url: string; passwordFile?: string };
}

/**
 * `fleetca migrate-store --to URL`: copies a SQLite CA (dataDir's fleetca.db, keys/ and kek.json)
 * into an empty PostgreSQL database, in one transaction, then verifies the copy as a replica will
 * read it: the same rows per table, the issuance log (its Merkle tree and signed heads) verifying
 * there, every key unwrapping with the passphrase from ca_keys and kek_params, and each CRL scope's
 * latest CRL byte-identical (so CRL numbers continue upward from where the SQLite CA left them).
 * The source is only read; the target is never overwritten: any CA row in it refuses the copy.
 */
export async function migrateStore(config: FleetcaConfig, passphrase: Secret | undefined, opts: MigrateStoreOptions): Promise<MigrateStoreReport> {
  if (config.storage.type !== "sqlite") {
    throw new OperatorError("the config's storage is already postgres: migrate-store copies the SQLite dataDir of a config with storage type sqlite");
  }
  checkTargetUrl(opts.to);
  const dir = config.dataDir;
  if (!existsSync(join(dir, DB_FILE))) throw new NoCaError(`no database at ${join(dir, DB_FILE)}`);
  if (!existsSync(join(dir, KEK_PARAMS_FILE))) {
    if (existsSync(join(dir, DEV_KEK_FILE))) {
      // Replicas derive the KEK from the passphrase and kek_params; a random KEK in one file has no place in the database.
      throw new OperatorError(`${dir} is in development mode (${DEV_KEK_FILE}, no passphrase): replicas could not derive its KEK; run "fleetca rotate kek" to a passphrase first`);
    }
    throw new NoCaError(`no CA key material in ${dir}`);
  }
  if (!passphrase) throw new OperatorError("migrate-store needs the CA's passphrase (FLEETCA_PASSPHRASE or passphraseFile): it verifies the copy by unwrapping every key");
  const running = liveServeState(dir);
  if (running) throw new OperatorError(`fleetca serve (pid ${running.pid}) is running on ${dir}: stop it first; a copy of a live database would miss its writes`);
  // Held for the whole copy: a daemon started meanwhile refuses to start on this dataDir.
  const lock = acquireServeLock(dir);
  try {
    // Also checks the passphrase against kek.json and finishes a KEK rotation a crash interrupted.
    const { keys: sourceKeys } = openKeyStore(dir, passphrase, { create: false });
    const keys = keyMaterial(dir, sourceKeys.names());
    const store = openDatabase(dir);
    const pool = openPgPool({ url: opts.to, urlName: "--to", pool: 2, ...(opts.passwordFile && { passwordFile: opts.passwordFile }) });
    try {
      const client = await pool.connect().catch((e: Error) => {
        throw new OperatorError(connectRefusal(e, "--to") ?? `cannot connect to the target database: ${e.message}`);
      });
      let copied: Map<string, number>;
      try {
        await migratePostgres(client);
        const occupied = [...(await targetRowCounts(client))].filter(([, n]) => n > 0);
        if (occupied.length > 0) throw notEmpty(occupied);
        copied = await copySqliteToPostgres(store.db, client, keys).catch((e: Error) => {
          if (e instanceof OperatorError) throw e;
          throw new OperatorError(`copy failed; rolled back, the target database holds no CA row: ${e.message.split("\n")[0]}`);
        });
      } finally {
        client.release();
      }
      try {
        return {
          source: dir,
          target: opts.to,
          tables: await verifyCounts(store, pool, copied, keys),
          audit: await verifyAudit(pool),
          keysVerified: await verifyKeys(pool, passphrase, keys),
          crlsVerified: await verifyCrls(store, pool),
          storage: { type: "postgres", url: opts.to, ...(opts.passwordFile && { passwordFile: resolvePath(opts.passwordFile) }) },
        };
      } catch (e) {
        // The copy is committed: say so, since a second run refuses the now non-empty target.
        const why = e instanceof OperatorError ? e.message : `verification failed: ${(e as Error).message.split("\n")[0]}`;
        throw new OperatorError(`${why} (the copy is committed: do not serve it; drop and recreate the target database before trying again)`);
      }
    } finally {
      await pool.end();
      store.close();
    }
  } finally {
    lock.release();
  }
}

/** The same refusals as config's storage.url: a secret is never in a URL (it is printed and logged). */
function checkTargetUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new OperatorError("--to: expected postgres://USER@HOST:PORT/DATABASE");
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") throw new OperatorError("--to: expected a postgres:// or postgresql:// URL");
  if (u.password) throw new OperatorError("--to: must not hold a password: put it in --password-file (or PGPASSWORD)");
  if (!u.hostname) throw new OperatorError("--to: must name a host");
  if (u.pathname.length <= 1) throw new OperatorError("--to: must name a database (postgres://USER@HOST:PORT/DATABASE)");
  // The URL goes into the storage config printed at the end: refused now if that config would be.
  const tls = urlTlsProblem(u);
  if (tls) throw new OperatorError(`--to: ${tls}`);
}

/** The wrapped key files' texts and kek.json's text, exactly as they are on disk. */
function keyMaterial(dir: string, names: string[]): KeyMaterial {
  const kekPath = join(dir, KEK_PARAMS_FILE);
  const params = readFileSync(kekPath, "utf8");
  const parsed = JSON.parse(params) as { version?: unknown; createdAt?: unknown };
  if (typeof parsed.version !== "number" || !Number.isSafeInteger(parsed.version) || parsed.version < 1) throw new OperatorError(`${kekPath}: no valid version`);
  const madeAt = typeof parsed.createdAt === "string" ? Date.parse(parsed.createdAt) : Number.NaN;
  return {
    keys: names.map((name) => {
      const path = join(dir, KEYS_DIR, `${name}.key.json`);
      return { name, record: readFileSync(path, "utf8"), createdAt: Math.floor(statSync(path).mtimeMs) };
    }),
    kekParams: { version: parsed.version, params, createdAt: Number.isNaN(madeAt) ? Math.floor(statSync(kekPath).mtimeMs) : madeAt },
  };
}

/** Rows per table in the target, each equal to the source's (ca_keys, kek_params: the files). */
async function verifyCounts(store: SqliteStore, pool: pg.Pool, copied: Map<string, number>, keys: KeyMaterial): Promise<Record<string, number>> {
  const client = await pool.connect();
  let target: Map<string, number>;
  try {
    target = await targetRowCounts(client);
  } finally {
    client.release();
  }
  const tables: Record<string, number> = {};
  for (const table of copiedTables(store.db).sort()) {
    let source = store.db.prepare(`SELECT count(*) FROM "${table}"`).pluck().get() as number;
    if (table === "ca_keys") source += keys.keys.length;
    if (table === "kek_params") source += 1;
    if (target.get(table) !== source || copied.get(table) !== source) {
      throw new OperatorError(`verification failed: ${table} has ${source} rows in the source but ${target.get(table) ?? 0} in the target`);
    }
    tables[table] = source;
  }
  return tables;
}

async function verifyAudit(pool: pg.Pool): Promise<MigrateStoreReport["audit"]> {
  const r = await verifyAuditLog(pgAuditVerifySource(pool));
  if (!r.ok) throw new OperatorError(`verification failed: the issuance log in the target does not verify: ${r.failure!.message}`);
  return { ok: r.ok, entries: r.entries, treeHeads: r.treeHeads, unsigned: r.unsigned, failure: r.failure };
}

/** Every key in ca_keys unwraps with the passphrase and the KEK parameters in kek_params. */
async function verifyKeys(pool: pg.Pool, passphrase: Secret, keys: KeyMaterial): Promise<number> {
  const { keys: store } = await openPgKek(pool, passphrase, { create: false, now: new Date() });
  const names = await store.names();
  if (names.join("\n") !== keys.keys.map((k) => k.name).join("\n")) throw new OperatorError("verification failed: ca_keys does not hold the key files' names");
  for (const name of names) await store.load(name);
  return names.length;
}

/** Each scope's latest CRL (its chunks, in order) is the same bytes in both databases. */
async function verifyCrls(store: SqliteStore, pool: pg.Pool): Promise<number> {
  const scopes = store.db.prepare("SELECT issuer_key_id AS issuer, shard, write_id AS writeId, der_length AS length FROM crls ORDER BY issuer_key_id, shard").all() as Array<{
    issuer: string;
    shard: number;
    writeId: string;
    length: number;
  }>;
  for (const s of scopes) {
    const source = Buffer.concat(
      store.db.prepare("SELECT bytes FROM crl_chunks WHERE issuer_key_id = ? AND shard = ? AND write_id = ? ORDER BY seq").pluck().all(s.issuer, s.shard, s.writeId) as Buffer[],
    );
    const { rows } = await pool.query<{ bytes: Buffer }>(
      "SELECT k.bytes FROM crls c JOIN crl_chunks k USING (issuer_key_id, shard, write_id) WHERE c.issuer_key_id = $1 AND c.shard = $2 ORDER BY k.seq",
      [s.issuer, s.shard],
    );
    const copy = Buffer.concat(rows.map((r) => r.bytes));
    if (source.length !== s.length || !copy.equals(source)) {
      throw new OperatorError(`verification failed: the CRL of issuer ${s.issuer}${s.shard >= 0 ? ` shard ${s.shard}` : ""} differs in the target`);
    }
  }
  return scopes.length;
}

/** The summary `fleetca migrate-store` prints, ending with the config to serve the copy. */
export function formatMigrateStore(r: MigrateStoreReport): string {
  const width = Math.max(...Object.keys(r.tables).map((t) => t.length));
  return [
    `copied ${r.source} into ${r.target} (one transaction) and verified the copy:`,
    ...Object.entries(r.tables).map(([t, n]) => `  ${t.padEnd(width)}  ${n} row${n === 1 ? "" : "s"}`),
    `issuance log verified in the target: ${r.audit.entries} entries, ${r.audit.treeHeads} signed tree heads${r.audit.unsigned > 0 ? ` (${r.audit.unsigned} entries after the latest head)` : ""}`,
    `keys verified: ${r.keysVerified} (each unwrapped with the passphrase from the database)`,
    `CRLs verified: ${r.crlsVerified} (the latest of each scope is byte-identical)`,
    "",
    "serve the copy with this in the config (every replica: the same passphrase and publicUrl):",
    "storage:",
    "  type: postgres",
    `  url: "${r.storage.url}"`,
    ...(r.storage.passwordFile ? [`  passwordFile: ${r.storage.passwordFile}`] : []),
  ].join("\n") + "\n";
}
