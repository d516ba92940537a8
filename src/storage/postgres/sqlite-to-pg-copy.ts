import type Database from "better-sqlite3";
import type pg from "pg";
import { OperatorError } from "../../core/errors.js";

/**
 * Tables that are not copied: schema_migrations (migratePostgres wrote the target's own) and
 * crl_leases (runtime state: which replica builds a CRL scope now; the target's replicas take
 * their own leases). sqlite_* are SQLite's internal tables (sqlite_sequence: AUTOINCREMENT).
 */
const NOT_COPIED = new Set(["schema_migrations", "crl_leases"]);

/**
 * One statement's rows at most: PostgreSQL takes at most 65,535 parameters per statement
 * (protocol: Int16 parameter count), and a statement of a few MB keeps memory bounded when the
 * rows are CRL chunks of 128 KiB each.
 */
const MAX_PARAMS = 60_000;
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

/** What the key store and the KEK of a SQLite data dir hold, as texts (ca_keys, kek_params). */
export interface KeyMaterial {
  keys: Array<{ name: string; record: string; createdAt: number }>;
  kekParams: { version: number; params: string; createdAt: number };
}

/** The CA tables of the SQLite file, every one the schema has except those never copied. */
export function copiedTables(db: Database.Database): string[] {
  const names = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
    .pluck()
    .all() as string[];
  return inForeignKeyOrder(db, names.filter((n) => !NOT_COPIED.has(n)));
}

/**
 * Rows in each table of the target's current schema (everything migratePostgres made, but
 * schema_migrations): non-empty ones are what the empty-target check names.
 */
export async function targetRowCounts(client: pg.ClientBase): Promise<Map<string, number>> {
  const { rows } = await client.query<{ name: string }>(
    "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations' ORDER BY table_name",
  );
  const counts = new Map<string, number>();
  for (const { name } of rows) {
    const r = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quote(name)}`);
    counts.set(name, r.rows[0]!.n);
  }
  return counts;
}

/**
 * Copies every CA table of the SQLite file, the wrapped key texts and kek.json's text into the
 * PostgreSQL database, in ONE transaction: a failure anywhere (a row PostgreSQL refuses, the
 * connection lost) rolls all of it back, so the target is left as empty as it was. The target
 * must hold no CA row (checked again here, under locks that keep a replica started meanwhile
 * from writing until the copy commits). Returns the rows copied per table.
 *
 * Rows are copied generically: both dialects have the same tables and column names
 * (migrations.ts), a BLOB arrives from better-sqlite3 as a Buffer, which node-postgres sends as
 * BYTEA, and INTEGER/REAL as numbers. Generated columns (certificates.crl_record) are left for
 * PostgreSQL to compute; identity columns (revocation_log.seq, renewal_windows.id) are copied as
 * they are (OVERRIDING SYSTEM VALUE: the revocation log's positions are what stored CRLs'
 * revocation_seq refer to) and their sequences set past the largest copied value, so the next
 * row a replica inserts does not collide.
 *
 * The SQLite reads run in one read transaction: one snapshot of the file, even if another
 * process (`fleetca revoke`) wrote to it meanwhile.
 */
export async function copySqliteToPostgres(db: Database.Database, client: pg.ClientBase, keys: KeyMaterial): Promise<Map<string, number>> {
  const tables = copiedTables(db);
  const copied = new Map<string, number>();
  db.prepare("BEGIN").run();
  try {
    await client.query("BEGIN");
    try {
      const target = await targetRowCounts(client);
      // EXCLUSIVE: readers go on, but no other session writes any of these tables until COMMIT.
      await client.query(`LOCK TABLE ${[...target.keys()].map(quote).join(", ")} IN EXCLUSIVE MODE`);
      const occupied = [...(await targetRowCounts(client))].filter(([, n]) => n > 0);
      if (occupied.length > 0) throw notEmpty(occupied);
      for (const table of tables) {
        if (!target.has(table)) throw new OperatorError(`the target database has no table ${table}: its schema differs from the source's`);
        copied.set(table, await copyTable(db, client, table));
        await advanceIdentities(client, table, autoincrementHigh(db, table));
      }
      for (const k of keys.keys) {
        await client.query("INSERT INTO ca_keys (name, record, created_at) VALUES ($1, $2, $3)", [k.name, k.record, k.createdAt]);
      }
      copied.set("ca_keys", (copied.get("ca_keys") ?? 0) + keys.keys.length);
      await client.query("INSERT INTO kek_params (version, params, created_at) VALUES ($1, $2, $3)", [keys.kekParams.version, keys.kekParams.params, keys.kekParams.createdAt]);
      copied.set("kek_params", (copied.get("kek_params") ?? 0) + 1);
      await client.query("COMMIT");
    } catch (e) {
      await client.query("ROLLBACK").catch(() => {});
      throw e;
    }
  } finally {
    db.prepare("COMMIT").run();
  }
  return copied;
}

/** The refusal naming what an occupied target holds. */
export function notEmpty(occupied: Array<[string, number]>): OperatorError {
  const what = occupied.map(([t, n]) => `${t} (${n} row${n === 1 ? "" : "s"})`).join(", ");
  return new OperatorError(`the target database is not empty: ${what}; migrate-store copies only into an empty database and never overwrites`);
}

async function copyTable(db: Database.Database, client: pg.ClientBase, table: string): Promise<number> {
  // hidden 2/3: a VIRTUAL/STORED generated column (PRAGMA table_xinfo); PostgreSQL computes its own.
  const columns = (db.prepare(`PRAGMA table_xinfo(${quote(table)})`).all() as Array<{ name: string; hidden: number }>)
    .filter((c) => c.hidden === 0)
    .map((c) => c.name);
  const { rows: targetColumns } = await client.query<{ name: string; identity: string; generated: string }>(
    "SELECT column_name AS name, is_identity AS identity, is_generated AS generated FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
    [table],
  );
  const writable = new Set(targetColumns.filter((c) => c.generated !== "ALWAYS").map((c) => c.name));
  const missing = columns.filter((c) => !writable.has(c));
  if (missing.length > 0) throw new OperatorError(`the target's table ${table} has no column ${missing.join(", ")}: its schema differs from the source's`);
  const overriding = targetColumns.some((c) => c.identity === "YES") ? " OVERRIDING SYSTEM VALUE" : "";
  const head = `INSERT INTO ${quote(table)} (${columns.map(quote).join(", ")})${overriding} VALUES `;
  const maxRows = Math.floor(MAX_PARAMS / columns.length);

  let batch: unknown[][] = [];
  let bytes = 0;
  let n = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const params: unknown[] = [];
    const tuples = batch.map((row) => `(${row.map((v) => `$${params.push(v)}`).join(", ")})`);
    await client.query(head + tuples.join(", "), params);
    n += batch.length;
    batch = [];
    bytes = 0;
  };
  for (const row of rowsOf(db, table, columns)) {
    batch.push(row);
    for (const v of row) bytes += Buffer.isBuffer(v) ? v.length : typeof v === "string" ? v.length : 8;
    if (batch.length >= maxRows || bytes >= MAX_BATCH_BYTES) await flush();
  }
  await flush();
  return n;
}

/**
 * A table's rows as value arrays. A table whose foreign key names itself (issuers.parent_key_id:
 * an intermediate names its root) is ordered parents first, since PostgreSQL checks each row's
 * reference as it is inserted; such tables hold a handful of rows.
 */
function* rowsOf(db: Database.Database, table: string, columns: string[]): Iterable<unknown[]> {
  const select = `SELECT ${columns.map(quote).join(", ")} FROM ${quote(table)}`;
  const selfRefs = (db.prepare(`PRAGMA foreign_key_list(${quote(table)})`).all() as Array<{ table: string; from: string; to: string }>).filter((f) => f.table === table);
  if (selfRefs.length === 0) {
    yield* db.prepare(select).raw().iterate() as Iterable<unknown[]>;
    return;
  }
  const all = db.prepare(select).raw().all() as unknown[][];
  const col = (name: string) => columns.indexOf(name);
  const placed = new Set<unknown>();
  let rest = all;
  while (rest.length > 0) {
    const ready = rest.filter((r) => selfRefs.every((f) => r[col(f.from)] === null || placed.has(r[col(f.from)])));
    if (ready.length === 0) throw new OperatorError(`table ${table}: rows reference rows that are not there`);
    for (const r of ready) {
      for (const f of selfRefs) placed.add(r[col(f.to)]);
      yield r;
    }
    rest = rest.filter((r) => !ready.includes(r));
  }
}

/**
 * The largest value SQLite's AUTOINCREMENT ever handed out for a table (sqlite_sequence), which
 * may exceed the largest one still stored: AUTOINCREMENT never reuses a value, nor must the copy.
 */
function autoincrementHigh(db: Database.Database, table: string): number {
  const hasSequence = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'").get() !== undefined;
  if (!hasSequence) return 0;
  return (db.prepare("SELECT seq FROM sqlite_sequence WHERE name = ?").pluck().get(table) as number | undefined) ?? 0;
}

/**
 * Sets each identity column's sequence past the largest value copied and past `floor` (what
 * SQLite's AUTOINCREMENT handed out), so the next value PostgreSQL generates is new (docs, setval).
 */
async function advanceIdentities(client: pg.ClientBase, table: string, floor: number): Promise<void> {
  const { rows } = await client.query<{ name: string }>(
    "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'YES'",
    [table],
  );
  for (const { name } of rows) {
    // is_called false with the high mark + 1 (1 for an empty table): the next nextval returns exactly it.
    await client.query(
      `SELECT setval(pg_get_serial_sequence($1, $2), GREATEST(COALESCE((SELECT MAX(${quote(name)}) FROM ${quote(table)}), 0), $3::bigint) + 1, false)`,
      [quote(table), name, floor],
    );
  }
}

/**
 * Tables ordered so that each comes after the tables its foreign keys name (PRAGMA
 * foreign_key_list), as PostgreSQL checks references row by row.
 */
function inForeignKeyOrder(db: Database.Database, tables: string[]): string[] {
  const deps = new Map(
    tables.map((t) => [
      t,
      new Set((db.prepare(`PRAGMA foreign_key_list(${quote(t)})`).all() as Array<{ table: string }>).map((f) => f.table).filter((d) => d !== t && tables.includes(d))),
    ]),
  );
  const ordered: string[] = [];
  while (ordered.length < tables.length) {
    const next = tables.find((t) => !ordered.includes(t) && [...deps.get(t)!].every((d) => ordered.includes(d)));
    if (next === undefined) throw new Error(`foreign keys between ${tables.filter((t) => !ordered.includes(t)).join(", ")} form a cycle`);
    ordered.push(next);
  }
  return ordered;
}

/** A table or column name as an SQL identifier (the names come from the schema, quoted anyway). */
function quote(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
