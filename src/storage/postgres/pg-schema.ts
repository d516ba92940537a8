import type { ClientBase } from "pg";
import { OperatorError } from "../../core/errors.js";
import { MIGRATIONS } from "../migrations.js";

/**
 * The key of the transaction-level advisory lock every schema migration on PostgreSQL runs under:
 * "fleetca" in ASCII, read as a number. Advisory locks are per database (docs, "Advisory Locks"),
 * so the replicas of one deployment sharing a database serialize on it; an unrelated application
 * would have to pick this very number to contend with it.
 */
const MIGRATION_LOCK = "28829630374110049"; // 0x666c6565746361

/**
 * Brings the PostgreSQL database `client` is connected to up to the latest schema in
 * storage/migrations.ts, as migrate() in sqlite-store.ts does for a SQLite file: one transaction
 * per migration, recorded in schema_migrations (the same columns as SQLite's). Returns the version
 * found and the version left.
 *
 * Several replicas may start at once against one database. Each transaction first takes
 * pg_advisory_xact_lock, then reads the current version: a replica that waited on the lock reads
 * what the one before it committed, so each version is applied once, by whichever replica gets
 * there first, and every replica returns once the schema is current. The lock is released by the
 * COMMIT or ROLLBACK (or the connection's end), so it works through a pooler in transaction mode
 * and an error cannot leave it held. READ COMMITTED is named, not inherited: each statement then
 * sees what was committed before it began (docs, "Transaction Isolation"), so the version read
 * after the lock is granted is current; under REPEATABLE READ the snapshot would date from the
 * lock statement, taken before the wait. The schema_migrations table is created under the lock
 * too: concurrent CREATE TABLE IF NOT EXISTS can both pass the check and one then fails.
 *
 * A database with a newer schema than this code knows is refused before anything is written, with
 * the message SQLite's refusal has.
 *
 * The tables go into the connection's current schema (the first of its search_path that exists).
 * The advisory lock is per database, not per schema: two deployments sharing a database in
 * different schemas only wait for each other's migrations.
 */
export async function migratePostgres(client: ClientBase): Promise<{ from: number; to: number }> {
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  let from: number | undefined;
  for (;;) {
    await client.query("BEGIN ISOLATION LEVEL READ COMMITTED");
    try {
      await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      await client.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT COLLATE \"C\" NOT NULL, applied_at BIGINT NOT NULL)",
      );
      // MAX of a BIGINT is a BIGINT, which node-postgres returns as a string: read it as int4.
      const { rows } = await client.query<{ v: number; db: string }>(
        "SELECT COALESCE(MAX(version), 0)::int AS v, current_database() AS db FROM schema_migrations",
      );
      const have = rows[0]!.v;
      from ??= have;
      if (have > latest) {
        // Names the database, never the connection string (it may carry a password).
        throw new OperatorError(`PostgreSQL database "${rows[0]!.db}" has schema v${have}, newer than this fleetca (v${latest}); upgrade fleetca`);
      }
      const next = MIGRATIONS.find((m) => m.version > have);
      if (!next) {
        await client.query("COMMIT");
        return { from, to: have };
      }
      // No parameters: node-postgres then sends the text as a simple query, which may hold
      // several statements (docs, "Message Flow": Simple Query); all run in this transaction.
      await client.query(next.postgres);
      await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", [next.version, next.name, Date.now()]);
      await client.query("COMMIT");
    } catch (e) {
      // The transaction is aborted anyway; a failed ROLLBACK (connection gone) must not hide why.
      await client.query("ROLLBACK").catch(() => {});
      throw e;
    }
  }
}
