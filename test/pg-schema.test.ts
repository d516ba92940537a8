/**
 * Issue 17, first increment: the PostgreSQL dialect of every migration reaches the schema the
 * SQLite one does, migratePostgres applies it once even when replicas race, and refuses a newer
 * schema. Runs against a real PostgreSQL (test/harness/postgres.ts), never a mock.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { MIGRATIONS } from "../src/storage/migrations.js";
import { migratePostgres } from "../src/storage/postgres/pg-schema.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";
import { OperatorError } from "../src/core/errors.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";

const LATEST = MIGRATIONS.at(-1)!.version;

let server: TestPostgres;
let dir: string;
let sqlitePath: string;
const clients: pg.Client[] = [];

beforeAll(async () => {
  const t0 = performance.now();
  server = await startPostgres();
  console.log(`postgres cluster up in ${Math.round(performance.now() - t0)} ms`);
  dir = mkdtempSync(join(tmpdir(), "fleetca-pg-schema-"));
  // The SQLite schema as the real code makes it: a store opened on a new file migrates it.
  sqlitePath = join(dir, "ca.db");
  new SqliteStore(sqlitePath).close();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let databases = 0;
/** A client on a new, empty database of the test cluster. */
async function freshDatabase(): Promise<{ url: string; client: pg.Client }> {
  const url = await server.createDatabase(`t${++databases}`);
  return { url, client: await connect(url) };
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  clients.push(client);
  return client;
}

function sqlite(): Database.Database {
  const db = new Database(sqlitePath);
  db.pragma("foreign_keys = ON");
  return db;
}

describe("PostgreSQL schema (migratePostgres)", () => {
  it("applies every migration to an empty database, once", async () => {
    const { client } = await freshDatabase();
    expect(await migratePostgres(client)).toEqual({ from: 0, to: LATEST });
    const { rows } = await client.query<{ version: string; name: string }>("SELECT version, name FROM schema_migrations ORDER BY version");
    expect(rows.map((r) => Number(r.version))).toEqual(MIGRATIONS.map((m) => m.version));
    expect(MIGRATIONS.map((m) => m.version)).toEqual(Array.from({ length: LATEST }, (_, i) => i + 1));
    expect(rows.map((r) => r.name)).toEqual(MIGRATIONS.map((m) => m.name));
    // A second start finds the schema current and does nothing.
    expect(await migratePostgres(client)).toEqual({ from: LATEST, to: LATEST });
  });

  it("reaches the schema SQLite has: tables, columns and types, keys, unique and foreign keys, indexes, triggers", async () => {
    const { client } = await freshDatabase();
    await migratePostgres(client);
    const lite = sqlite();
    try {
      const sqliteSchema = describeSqlite(lite);
      const pgSchema = await describePostgres(client);
      expect(Object.keys(pgSchema.tables).sort()).toEqual(Object.keys(sqliteSchema.tables).sort());
      expect(Object.keys(sqliteSchema.tables)).toContain("schema_migrations");
      for (const table of Object.keys(sqliteSchema.tables)) {
        expect({ table, ...pgSchema.tables[table] }).toEqual({ table, ...sqliteSchema.tables[table] });
      }
      expect(pgSchema.indexes).toEqual(sqliteSchema.indexes);
      expect(Object.keys(sqliteSchema.indexes).length).toBeGreaterThanOrEqual(15);
      // SQLite's append-only triggers, plus PostgreSQL's TRUNCATE ones (SQLite has no TRUNCATE).
      expect(pgSchema.triggers).toEqual(
        [...sqliteSchema.triggers, "audit_log_no_truncate", "audit_tree_heads_no_truncate"].sort(),
      );
      // Every TEXT column compares bytes, as SQLite's BINARY collation does (migrations.ts).
      expect(pgSchema.textCollations).toEqual(["C"]);
    } finally {
      lite.close();
    }
  });

  it("two replicas migrating one empty database at once: both succeed, each version applied once", async () => {
    const { url } = await freshDatabase();
    const [a, b, c] = await Promise.all([connect(url), connect(url), connect(url)]);
    const results = await Promise.all([migratePostgres(a), migratePostgres(b), migratePostgres(c)]);
    for (const r of results) expect(r.to).toBe(LATEST);
    expect(Math.min(...results.map((r) => r.from))).toBe(0);
    const { rows } = await a.query<{ version: number; n: number }>(
      "SELECT version::int AS version, count(*)::int AS n FROM schema_migrations GROUP BY version ORDER BY version",
    );
    expect(rows).toEqual(MIGRATIONS.map((m) => ({ version: m.version, n: 1 })));
    // The loser's transactions ran no migration twice: v1's tables exist once, v6's column too.
    const cols = await a.query("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'certificates' AND column_name = 'crl_record'");
    expect(cols.rowCount).toBe(1);
  });

  it("refuses a database with a newer schema, in one line, writing nothing", async () => {
    const { client } = await freshDatabase();
    await migratePostgres(client);
    await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'from the future', 0)", [LATEST + 1]);
    const err = await migratePostgres(client).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OperatorError);
    const db = (await client.query<{ d: string }>("SELECT current_database() AS d")).rows[0]!.d;
    expect((err as Error).message).toBe(
      `PostgreSQL database "${db}" has schema v${LATEST + 1}, newer than this fleetca (v${LATEST}); upgrade fleetca`,
    );
    expect((err as Error).message).not.toContain("\n");
    // Rolled back: the connection is usable and the table untouched.
    const { rows } = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM schema_migrations");
    expect(rows[0]!.n).toBe(LATEST + 1);
  });

  it("holds the CHECK and foreign-key constraints SQLite holds", async () => {
    const { client } = await freshDatabase();
    await migratePostgres(client);
    const lite = sqlite();
    const issuer = "INSERT INTO issuers (key_id, role, key_name, der, not_before, not_after, created_at) VALUES ('aa', 'intermediate', 'k', '\\x00', 0, 1, 0)";
    const cert = (serial: string, cols: string, vals: string): string =>
      `INSERT INTO certificates (serial, issuer_key_id, sans, not_before, not_after, der, provisioner, created_at${cols}) VALUES ('${serial}', 'aa', '{}', 0, 1, '\\x00', 'p', 0${vals})`;
    // Each statement, whether SQLite and PostgreSQL accept it: the two must agree.
    const cases: Array<[string, boolean]> = [
      [issuer, true],
      [issuer.replace("'aa', 'intermediate'", "'ab', 'leaf'"), false],
      [cert("01", "", ""), true],
      [cert("02", ", status", ", 'expired'"), false],
      [cert("03", ", status, revoked_at, revocation_reason", ", 'revoked', 5, 1"), true],
      [cert("04", ", status, revoked_at, revocation_reason", ", 'revoked', 5, 7"), false],
      [cert("05", ", status, revoked_at, revocation_reason", ", 'revoked', 5, 11"), false],
      [cert("06", ", status, revoked_at, revocation_reason", ", 'revoked', 5, NULL"), true],
      [cert("07", ", crl_shard", ", -1"), false],
      [cert("08", "", "").replace("'aa', '{}'", "'zz', '{}'"), false],
      ["INSERT INTO crls (issuer_key_id, shard, crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length) VALUES ('aa', -2, 1, 0, 1, 0, 0, 'w', 1)", false],
      ["INSERT INTO renewal_windows (kind, value, window_start, window_end, created_at) VALUES ('serial', '01', 10, 20, 0)", true],
      ["INSERT INTO renewal_windows (kind, value, window_start, window_end, created_at) VALUES ('serial', '01', 20, 20, 0)", false],
      ["INSERT INTO renewal_windows (kind, value, window_start, window_end, created_at) VALUES ('lineage', '01', 10, 20, 0)", false],
      ["INSERT INTO provisioner_keys (name, kid, public_jwk, created_at) VALUES ('a', 'k1', '{}', 0)", true],
      ["INSERT INTO provisioner_keys (name, kid, public_jwk, created_at) VALUES ('b', 'k1', '{}', 0)", false],
      ["INSERT INTO idempotency_keys (provisioner, subject, key, request_hash, serial, expires_at, created_at) VALUES ('p', 's', 'k', 'h', 'ff', 0, 0)", false],
    ];
    try {
      for (const [sql, accepted] of cases) {
        // SQLite wants x'00' for a blob literal; '\x00' is PostgreSQL's bytea escape.
        const liteSql = sql.replaceAll("'\\x00'", "x'00'");
        const onSqlite = (() => {
          try {
            lite.exec(liteSql);
            return true;
          } catch {
            return false;
          }
        })();
        const onPostgres = await client.query(sql).then(
          () => true,
          () => false,
        );
        expect({ sql, sqlite: onSqlite, postgres: onPostgres }).toEqual({ sql, sqlite: accepted, postgres: accepted });
      }
    } finally {
      lite.close();
    }
  });

  it("computes crl_record as SQLite does, and orders serials as SQLite does", async () => {
    const { client } = await freshDatabase();
    await migratePostgres(client);
    const dir2 = mkdtempSync(join(tmpdir(), "fleetca-pg-record-"));
    const path = join(dir2, "ca.db");
    new SqliteStore(path).close();
    const lite = new Database(path);
    try {
      const issuer = "INSERT INTO issuers (key_id, role, key_name, der, not_before, not_after, created_at) VALUES ('aa', 'intermediate', 'k', '\\x00', 0, 1, 0)";
      lite.exec(issuer.replace("'\\x00'", "x'00'"));
      await client.query(issuer);
      // [serial, revoked_at, reason]: even and odd lengths, a 21-octet serial, negative and
      // non-whole-second times, no reason, and a valid (unrevoked) row; upper case to tell byte
      // order from a locale's.
      const rows: Array<[string, number | null, number | null]> = [
        ["0a1b", 1_700_000_000_123, 1],
        ["abc", -1500, null],
        ["00".repeat(20), 0, 10],
        ["00".repeat(21), 999, 0],
        ["1234", -1, 4],
        ["B0", 5, null],
        ["a0", null, null],
      ];
      for (const [serial, revokedAt, reason] of rows) {
        const status = revokedAt === null ? "valid" : "revoked";
        const sql = "INSERT INTO certificates (serial, issuer_key_id, sans, not_before, not_after, der, provisioner, status, revoked_at, revocation_reason, created_at)";
        lite.prepare(`${sql} VALUES (?, 'aa', '{}', 0, 1, x'00', 'p', ?, ?, ?, 0)`).run(serial, status, revokedAt, reason);
        await client.query(`${sql} VALUES ($1, 'aa', '{}', 0, 1, '\\x00', 'p', $2, $3, $4, 0)`, [serial, status, revokedAt, reason]);
      }
      const fromSqlite = lite.prepare("SELECT serial, crl_record FROM certificates ORDER BY serial").all();
      const fromPostgres = (await client.query("SELECT serial, crl_record FROM certificates ORDER BY serial")).rows;
      expect(fromPostgres).toEqual(fromSqlite);
      expect(fromSqlite.map((r) => (r as { serial: string }).serial).indexOf("B0")).toBeLessThan(
        fromSqlite.map((r) => (r as { serial: string }).serial).indexOf("a0"),
      );
    } finally {
      lite.close();
      rmSync(dir2, { recursive: true, force: true });
    }
  });

  it("keeps the issuance log append-only", async () => {
    const { client } = await freshDatabase();
    await migratePostgres(client);
    await client.query("INSERT INTO audit_log (idx, at, kind, entry, leaf_hash) VALUES (0, 0, 'issue', '\\x00', '\\x00')");
    await expect(client.query("UPDATE audit_log SET at = 1")).rejects.toThrow("the issuance log is append-only");
    await expect(client.query("DELETE FROM audit_log")).rejects.toThrow("the issuance log is append-only");
    await expect(client.query("TRUNCATE audit_log")).rejects.toThrow("the issuance log is append-only");
    await expect(client.query("TRUNCATE audit_tree_heads")).rejects.toThrow("signed tree heads are append-only");
  });
});

interface Column {
  name: string;
  /** The type class: integer, real, text or blob (PostgreSQL's mapped back). */
  type: string;
  notNull: boolean;
  generated: boolean;
}
interface TableShape {
  columns: Column[];
  primaryKey: string[];
  unique: string[][];
  /** "column -> table(column)", sorted. */
  foreignKeys: string[];
}
interface IndexShape {
  table: string;
  columns: string[];
  unique: boolean;
  /** The partial index's WHERE, normalized (no spaces, parentheses or casts); null if none. */
  where: string | null;
}
interface Shape {
  tables: Record<string, TableShape>;
  indexes: Record<string, IndexShape>;
  triggers: string[];
}

/** "(status = 'revoked'::text)" and "status = 'revoked'" both become "status='revoked'". */
function normalizePredicate(s: string): string {
  return s.replace(/::[a-z ]+/gi, "").replace(/[()\s]/g, "").toLowerCase();
}

function describeSqlite(db: Database.Database): Shape {
  const typeClass: Record<string, string> = { INTEGER: "integer", REAL: "real", TEXT: "text", BLOB: "blob" };
  const tables: Record<string, TableShape> = {};
  const tableNames = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all() as string[];
  for (const t of tableNames) {
    // table_xinfo, not table_info: the latter hides generated columns (crl_record).
    const cols = db.prepare("SELECT name, type, \"notnull\" AS nn, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid").all(t) as Array<{
      name: string;
      type: string;
      nn: number;
      pk: number;
      hidden: number;
    }>;
    const uniques = (db.prepare("SELECT name FROM pragma_index_list(?) WHERE origin = 'u'").pluck().all(t) as string[]).map(
      (ix) => db.prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno").pluck().all(ix) as string[],
    );
    const fks = db.prepare('SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)').all(t) as Array<{ from: string; table: string; to: string }>;
    tables[t] = {
      columns: cols.map((c) => ({
        name: c.name,
        type: typeClass[c.type] ?? `?${c.type}`,
        // A primary-key column is NOT NULL in PostgreSQL; SQLite's rowid alias is never NULL
        // either, and fleetca never stores a NULL key.
        notNull: c.nn === 1 || c.pk > 0,
        generated: c.hidden === 2 || c.hidden === 3,
      })),
      primaryKey: cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name),
      unique: uniques,
      foreignKeys: fks.map((f) => `${f.from} -> ${f.table}(${f.to})`).sort(),
    };
  }
  const indexes: Record<string, IndexShape> = {};
  // sql IS NULL: the automatic indexes behind PRIMARY KEY and UNIQUE, compared as constraints.
  const ixs = db.prepare("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").all() as Array<{ name: string; tbl_name: string; sql: string }>;
  for (const ix of ixs) {
    const where = /\bWHERE\b(.*)$/is.exec(ix.sql);
    indexes[ix.name] = {
      table: ix.tbl_name,
      columns: db.prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno").pluck().all(ix.name) as string[],
      unique: /^CREATE UNIQUE/i.test(ix.sql),
      where: where ? normalizePredicate(where[1]!) : null,
    };
  }
  const triggers = db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name").pluck().all() as string[];
  return { tables, indexes: sortKeys(indexes), triggers };
}

async function describePostgres(client: pg.Client): Promise<Shape & { textCollations: string[] }> {
  const typeClass: Record<string, string> = { bigint: "integer", "double precision": "real", text: "text", bytea: "blob" };
  const tables: Record<string, TableShape> = {};
  const cols = await client.query<{ table_name: string; column_name: string; data_type: string; is_nullable: string; is_generated: string }>(
    `SELECT table_name, column_name, data_type, is_nullable, is_generated FROM information_schema.columns
     WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`,
  );
  const names = await client.query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
  );
  for (const { table_name } of names.rows) tables[table_name] = { columns: [], primaryKey: [], unique: [], foreignKeys: [] };
  for (const c of cols.rows) {
    tables[c.table_name]?.columns.push({
      name: c.column_name,
      type: typeClass[c.data_type] ?? `?${c.data_type}`,
      notNull: c.is_nullable === "NO",
      generated: c.is_generated === "ALWAYS",
    });
  }
  // Constraint columns in key order (conkey is ordered as declared).
  const constraints = await client.query<{ table_name: string; contype: string; cols: string[]; ftable: string | null; fcols: string[] | null }>(
    `SELECT t.relname AS table_name, c.contype,
            array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS cols,
            f.relname AS ftable,
            array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS fcols
     FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace ns ON ns.oid = t.relnamespace
     LEFT JOIN pg_class f ON f.oid = c.confrelid
     WHERE ns.nspname = current_schema() AND c.contype IN ('p', 'u', 'f')
     ORDER BY t.relname, c.conname`,
  );
  for (const c of constraints.rows) {
    const t = tables[c.table_name]!;
    if (c.contype === "p") t.primaryKey = c.cols;
    else if (c.contype === "u") t.unique.push(c.cols);
    else t.foreignKeys.push(...c.cols.map((col, i) => `${col} -> ${c.ftable}(${c.fcols![i]})`));
  }
  for (const t of Object.values(tables)) t.foreignKeys.sort();
  const ixs = await client.query<{ name: string; table_name: string; cols: string[]; unique: boolean; pred: string | null }>(
    `SELECT i.relname AS name, t.relname AS table_name, ix.indisunique AS unique, pg_get_expr(ix.indpred, ix.indrelid) AS pred,
            array(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS cols
     FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace ns ON ns.oid = t.relnamespace
     WHERE ns.nspname = current_schema()
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid AND c.contype IN ('p', 'u'))`,
  );
  const indexes: Record<string, IndexShape> = {};
  for (const ix of ixs.rows) {
    indexes[ix.name] = { table: ix.table_name, columns: ix.cols, unique: ix.unique, where: ix.pred === null ? null : normalizePredicate(ix.pred) };
  }
  const triggers = await client.query<{ name: string }>(
    `SELECT DISTINCT tg.tgname AS name FROM pg_trigger tg JOIN pg_class t ON t.oid = tg.tgrelid JOIN pg_namespace ns ON ns.oid = t.relnamespace
     WHERE ns.nspname = current_schema() AND NOT tg.tgisinternal ORDER BY 1`,
  );
  const collations = await client.query<{ c: string | null }>(
    `SELECT DISTINCT collation_name AS c FROM information_schema.columns WHERE table_schema = current_schema() AND data_type = 'text'`,
  );
  return {
    tables,
    indexes: sortKeys(indexes),
    triggers: triggers.rows.map((r) => r.name),
    textCollations: collations.rows.map((r) => r.c ?? "(database default)"),
  };
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
