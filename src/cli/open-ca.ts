import { chmodSync, existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import type { FleetcaConfig } from "../config/schema.js";
import { OperatorError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import { openPgCaStorage } from "../storage/postgres/pg-ca-storage.js";
import { openPgKek } from "../storage/postgres/pg-key-store.js";
import type { GroupCommitSettings } from "../storage/sqlite/issuance-group-commit.js";
import { NoCaError } from "../core/errors.js";
import type { CaStorage } from "../storage/ca-storage.js";
import { sqliteCaStorage } from "../storage/sqlite/sqlite-ca-storage.js";
import { DB_FILE, KEYS_DIR, openDatabase, openDataDir, openInventory, type OpenedCa } from "./data-dir.js";

export interface OpenCaOptions {
  /** Create the KEK (and, with PostgreSQL, its parameters in the database) when there is none: init. */
  create: boolean;
  /** SQLite: open the file read-only (a public worker). */
  readonlyStore?: boolean;
  groupCommit?: GroupCommitSettings;
  writerThread?: URL | null;
  onWriterLost?: (err: Error) => void;
  log?: Logger;
}

/**
 * Opens the CA the config names for serving: the data dir's SQLite file and key files (the
 * default), or the PostgreSQL database replicas share (storage.type postgres), whose keys and KEK
 * parameters are in the database too (pg-key-store.ts). Either way the caller gets the ports and
 * the key store, and dataDir exists (0700) for this replica's own files.
 */
export async function openCa(config: FleetcaConfig, passphrase: Secret | undefined, opts: OpenCaOptions): Promise<OpenedCa> {
  if (config.storage.type === "sqlite") return openDataDir(config.dataDir, passphrase, opts);
  const dir = config.dataDir;
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!statSync(dir).isDirectory()) throw new OperatorError(`dataDir ${dir} is not a directory`);
  if (statSync(dir).mode & 0o077) chmodSync(dir, 0o700);
  const { storage, store } = await openPgCaStorage(
    { url: config.storage.url, pool: config.storage.pool, ...(config.storage.passwordFile && { passwordFile: config.storage.passwordFile }) },
    (err) => opts.log?.warn({ err: err.message }, "a PostgreSQL connection was lost while idle; the next query opens another"),
  );
  try {
    const { kek, keys } = await openPgKek(store.pool, passphrase, { create: opts.create, now: new Date() });
    return { dir, storage, caKeys: keys, kek };
  } catch (e) {
    await storage.close();
    throw e;
  }
}

/**
 * Opens only the CA's storage: no key store, no KEK, no passphrase. For the commands that read or
 * change the inventory and never sign (`fleetca list`, `revoke`, `renew-window`, `retire root`,
 * `status`, `audit`). SQLite: the data dir's database (read-only when `readonly`), which must
 * exist; PostgreSQL: the shared database, which must hold a CA.
 */
export async function openCaStorage(config: FleetcaConfig, opts: { readonly?: boolean } = {}): Promise<CaStorage> {
  if (config.storage.type === "sqlite") {
    const path = join(config.dataDir, DB_FILE);
    if (!existsSync(path)) throw new NoCaError(`no database at ${path}`);
    return sqliteCaStorage(opts.readonly ? openInventory(config.dataDir) : openDatabase(config.dataDir), path, join(config.dataDir, KEYS_DIR));
  }
  const { storage } = await openPgCaStorage({ url: config.storage.url, pool: 2, ...(config.storage.passwordFile && { passwordFile: config.storage.passwordFile }) });
  try {
    if ((await storage.issuers.listIssuers()).length === 0) throw new NoCaError(`no CA in ${storage.location} (run fleetca init with this config)`);
  } catch (e) {
    await storage.close();
    throw e;
  }
  return storage;
}
