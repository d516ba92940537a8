/**
 * Issue 17: "every storage test runs against both adapters". A store-level test written against
 * the adapter-neutral CaStorage (src/storage/ca-storage.ts) runs once per adapter with
 *
 *   describe.each(STORAGE_BACKENDS)("… on %s", (name) => {
 *     const backend = useStorageBackend(name);
 *     it("…", async () => { const storage = await backend.fresh(); … });
 *   });
 *
 * SQLite is the real SqliteStore on a file of its own (in /dev/shm when there is one: the tests
 * make many); PostgreSQL is a real throwaway cluster (harness/postgres.ts), started once per
 * describe block, with a database of its own per fresh(). Neither is a stand-in: a difference
 * between the adapters shows up as a failure on one of them.
 */
import { afterAll, afterEach, beforeAll } from "vitest";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CaStorage } from "../../src/storage/ca-storage.js";
import { openPgCaStorage } from "../../src/storage/postgres/pg-ca-storage.js";
import type { PgStore } from "../../src/storage/postgres/pg-store.js";
import { sqliteCaStorage } from "../../src/storage/sqlite/sqlite-ca-storage.js";
import { SqliteStore } from "../../src/storage/sqlite/sqlite-store.js";
import { startPostgres, type TestPostgres } from "./postgres.js";

export const STORAGE_BACKENDS = ["SQLite", "PostgreSQL"] as const;
export type StorageBackendName = (typeof STORAGE_BACKENDS)[number];

export interface StorageBackend {
  readonly name: StorageBackendName;
  /** A fresh, empty, migrated storage of its own; closed after the test that made it. */
  fresh(): Promise<CaStorage>;
  /**
   * For many short runs that each need an empty storage (a property test's sequences): every
   * next() closes or empties what the previous one returned and answers a storage as empty as a
   * fresh one. SQLite: a new file each time (opening one costs well under a millisecond).
   * PostgreSQL: one database, every table but schema_migrations emptied and every identity
   * restarted (emptyPostgres), so revocation_log's seq and audit_log's ids start over as in a new
   * database. A CREATE DATABASE and a migrated pool per run measured 400–850 ms on the project's
   * shared 2-core machine, the emptying ~11 ms; and the adapter keeps nothing of the database's
   * content in memory that could outlive it (pg-store.ts and its ports read every answer from it).
   */
  reused(): { next(): Promise<CaStorage> };
  /**
   * Plain SQL on the database `storage` (from fresh()) is on, for what a test must set up or look
   * at below the ports (rows no port would write, leftovers of a crash). `?` placeholders on both
   * adapters; the rows come back as arrays of column values, as better-sqlite3's raw() gives them.
   */
  sql(storage: CaStorage): Sql;
  /**
   * Another process on the database `storage` (from fresh()) is on: its own connection to the
   * SQLite file, its own pool on PostgreSQL. Closed after the test. `readonly`: as a public
   * worker opens it, a read-only handle on SQLite (PostgreSQL workers use an ordinary pool).
   */
  another(storage: CaStorage, opts?: { readonly?: boolean }): Promise<CaStorage>;
}

export type Sql = (text: string, params?: readonly unknown[]) => Promise<unknown[][]>;

/**
 * Every table but schema_migrations emptied and every identity started over: what a new database
 * holds. DELETE, not TRUNCATE: on tables of a few rows TRUNCATE (a new file per table) measured
 * ~80 ms against a few for DELETE. The issuance log's tables refuse changes by trigger
 * (append-only, migrations.ts); session_replication_role = replica turns triggers, foreign-key
 * checks among them, off for this transaction only (docs, "Client Connection Defaults"), which the
 * test cluster's bootstrap superuser may set. A test's reset, never something the adapter does.
 */
async function emptyPostgres(store: PgStore): Promise<void> {
  const client = await store.pool.connect();
  try {
    const { rows } = await client.query<{ stmt: string }>(
      `SELECT format('DELETE FROM %I', tablename) AS stmt FROM pg_tables
         WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'
       UNION ALL
       SELECT format('SELECT setval(pg_get_serial_sequence(%L, %L), 1, false)', quote_ident(table_name), column_name) FROM information_schema.columns
         WHERE table_schema = current_schema() AND is_identity = 'YES'`,
    );
    // One simple query (no parameters): several statements, one transaction.
    await client.query(["BEGIN", "SET LOCAL session_replication_role = replica", ...rows.map((r) => r.stmt), "COMMIT"].join(";\n"));
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

/**
 * Registers, in the describe block it is called from, the hooks `name` needs (the PostgreSQL
 * cluster is started before its tests and stopped after them; every storage a test opened is
 * closed after it) and returns the backend.
 */
export function useStorageBackend(name: StorageBackendName): StorageBackend {
  let dir = "";
  let server: TestPostgres | undefined;
  let made = 0;
  const closers: Array<() => Promise<void>> = [];
  const sqlOf = new WeakMap<CaStorage, Sql>();
  /** Where each storage fresh() made is: the SQLite file, or the PostgreSQL URL. */
  const whereOf = new WeakMap<CaStorage, string>();

  beforeAll(async () => {
    dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "fleetca-storage-"));
    if (name === "PostgreSQL") server = await startPostgres();
  }, 120_000);
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const openSqlite = (path = join(dir, `ca-${++made}.db`), readonly = false): { storage: CaStorage; path: string } => {
    const store = new SqliteStore(path, { readonly });
    // No key files here: nothing these tests read vouches for an audit key.
    const storage = sqliteCaStorage(store, path, join(dir, "keys"));
    sqlOf.set(storage, async (text, params = []) => {
      const stmt = store.db.prepare(text);
      if (!stmt.reader) {
        stmt.run(...params);
        return [];
      }
      return stmt.raw().all(...params) as unknown[][];
    });
    whereOf.set(storage, path);
    return { storage, path };
  };
  const removeSqlite = (path: string): void => {
    for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
  };
  const openPg = async (existing?: string): Promise<{ storage: CaStorage; store: PgStore }> => {
    if (!server) throw new Error("the PostgreSQL cluster is not started: call fresh() from a test, not while collecting");
    const url = existing ?? (await server.createDatabase(`t${++made}`));
    const opened = await openPgCaStorage({ url, pool: 4 });
    whereOf.set(opened.storage, url);
    sqlOf.set(opened.storage, async (text, params = []) => {
      let n = 0;
      const r = await opened.store.pool.query({ text: text.replace(/\?/g, () => `$${++n}`), values: [...params], rowMode: "array" });
      return r.rows as unknown[][];
    });
    return opened;
  };

  return {
    name,
    async another(storage, opts = {}) {
      const where = whereOf.get(storage);
      if (where === undefined) throw new Error("not a storage this backend opened");
      const other = name === "SQLite" ? openSqlite(where, opts.readonly).storage : (await openPg(where)).storage;
      closers.push(() => other.close());
      return other;
    },
    sql(storage) {
      const sql = sqlOf.get(storage);
      if (!sql) throw new Error("not a storage this backend opened");
      return sql;
    },
    async fresh() {
      if (name === "SQLite") {
        const { storage, path } = openSqlite();
        closers.push(async () => {
          await storage.close();
          removeSqlite(path);
        });
        return storage;
      }
      const { storage } = await openPg();
      closers.push(() => storage.close());
      return storage;
    },
    reused() {
      if (name === "SQLite") {
        let current: { storage: CaStorage; path: string } | null = null;
        const closeCurrent = async () => {
          if (!current) return;
          await current.storage.close();
          removeSqlite(current.path);
          current = null;
        };
        closers.push(closeCurrent);
        return {
          async next() {
            await closeCurrent();
            current = openSqlite();
            return current.storage;
          },
        };
      }
      let opened: Promise<{ storage: CaStorage; store: PgStore }> | null = null;
      let used = false;
      closers.push(async () => {
        if (opened) await (await opened).storage.close();
      });
      return {
        async next() {
          if (!opened) opened = openPg();
          const { storage, store } = await opened;
          if (used) await emptyPostgres(store);
          used = true;
          return storage;
        },
      };
    },
  };
}
