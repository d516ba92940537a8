import { chmodSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { NoCaError, OperatorError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import { openKek, type Kek } from "../signing/kek.js";
import { SoftKeyStore } from "../signing/soft-keystore.js";
import { completeInterruptedRotation } from "../signing/kek-rotation.js";
import type { GroupCommitSettings } from "../storage/sqlite/issuance-group-commit.js";
import { SqliteStore } from "../storage/sqlite/sqlite-store.js";
import type { CaStorage } from "../storage/ca-storage.js";
import { sqliteCaStorage } from "../storage/sqlite/sqlite-ca-storage.js";
import { FileKeyStore, type CaKeyStore } from "../signing/ca-key-store.js";

export const DB_FILE = "fleetca.db";
export const KEYS_DIR = "keys";
export const SERVE_STATE_FILE = "serve.json";

/**
 * A CA opened for serving, whichever adapter keeps its state: the daemon and its workers use
 * only this (storage ports and the key store), never an adapter's own class.
 */
export interface OpenedCa {
  /** This replica's data dir: serve.json and the serve lock; with SQLite, the database and keys too. */
  dir: string;
  storage: CaStorage;
  caKeys: CaKeyStore;
  kek: Kek;
}

/** A SQLite data dir, opened: OpenedCa plus the synchronous store and key files the CLI commands use. */
export interface OpenedDataDir extends OpenedCa {
  store: SqliteStore;
  keys: SoftKeyStore;
}

/** True when dataDir already holds a hierarchy (a database with issuers, or key files). */
export function dataDirInitialised(dir: string): boolean {
  if (!existsSync(join(dir, DB_FILE))) {
    const keys = join(dir, KEYS_DIR);
    return existsSync(keys) && readdirSync(keys).some((f) => f.endsWith(".key.json"));
  }
  const store = new SqliteStore(join(dir, DB_FILE), { readonly: true });
  try {
    return store.listIssuers().length > 0;
  } finally {
    store.close();
  }
}

/**
 * Opens the data directory: 0700 dir, KEK (creating it only when `create`), key store, database
 * (read-only when `readonlyStore`).
 */
export function openDataDir(
  dir: string,
  passphrase: Secret | undefined,
  opts: { create: boolean; readonlyStore?: boolean; groupCommit?: GroupCommitSettings; writerThread?: URL | null; onWriterLost?: (err: Error) => void },
): OpenedDataDir {
  const { kek, keys } = openKeyStore(dir, passphrase, opts);
  // A public worker only reads the database (the primary migrated it and writes it).
  const store = new SqliteStore(join(dir, DB_FILE), {
    readonly: opts.readonlyStore ?? false,
    ...(opts.groupCommit && { groupCommit: opts.groupCommit }),
    ...(opts.writerThread && { writerThread: opts.writerThread }),
    ...(opts.onWriterLost && { onWriterLost: opts.onWriterLost }),
  });
  return { dir, store, keys, kek, storage: sqliteCaStorage(store, join(dir, DB_FILE), join(dir, KEYS_DIR)), caKeys: new FileKeyStore(keys) };
}

/**
 * Opens only the KEK and the key store (`fleetca rotate kek` needs no database). A KEK rotation
 * that was committed but not finished (a crash) is completed first, so the KEK read is the one
 * the key files name (kek-rotation.ts).
 */
export function openKeyStore(dir: string, passphrase: Secret | undefined, opts: { create: boolean }): { kek: Kek; keys: SoftKeyStore } {
  if (!existsSync(dir)) {
    if (!opts.create) throw new NoCaError(`dataDir ${dir} does not exist`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
  if (!statSync(dir).isDirectory()) throw new OperatorError(`dataDir ${dir} is not a directory`);
  if (statSync(dir).mode & 0o077) chmodSync(dir, 0o700);
  completeInterruptedRotation(dir);
  const kek = openKek({ dataDir: dir, passphrase, create: opts.create });
  return { kek, keys: new SoftKeyStore(join(dir, KEYS_DIR), kek) };
}

/**
 * Opens only the database, read-write, for commands that change the inventory but need no key
 * (`fleetca revoke`). Never creates one: a missing database means the CA was never initialised.
 */
export function openDatabase(dir: string): SqliteStore {
  const path = join(dir, DB_FILE);
  if (!existsSync(path)) throw new NoCaError(`no database at ${path}`);
  return new SqliteStore(path);
}

/** Opens only the database, read-only, for inventory commands that need no key. */
export function openInventory(dir: string): SqliteStore {
  return new SqliteStore(join(dir, DB_FILE), { readonly: true });
}
