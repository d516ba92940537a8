import pg from "pg";
import { CaError } from "../../core/errors.js";
import { isTlsFailure } from "./pg-url-tls.js";

/**
 * Running one unit of work as a PostgreSQL transaction on a pooled connection, and telling a
 * database that cannot answer (503 "unavailable", retry later) from a bug (500).
 */

/**
 * READ COMMITTED, named rather than inherited from the server's default_transaction_isolation:
 * every write of the adapter is a single-row conditional statement (INSERT … ON CONFLICT, UPDATE …
 * WHERE status = 'valid') whose uniqueness or condition PostgreSQL re-checks against the row a
 * concurrent transaction committed after waiting for it (docs, "Transaction Isolation", 13.2.1:
 * the WHERE is re-evaluated on the updated row; ON CONFLICT sees the other's row once it commits),
 * so two replicas racing agree on one winner without a serialization failure. And each statement
 * sees what was committed before it began, which the log appends need: the MAX(idx) read after the
 * append lock is granted (pg-append-lock.ts) is the latest. Under REPEATABLE READ both would fail
 * with 40001 instead, to be retried.
 */
const BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED";

/**
 * A serialization failure or a deadlock (SQLSTATE 40001, 40P01) aborts the transaction with nothing
 * of it stored; run again it usually goes through. Bounded: a workload that keeps failing is
 * reported as "unavailable", not retried for ever.
 */
const MAX_ATTEMPTS = 5;
const RETRYABLE = new Set(["40001", "40P01"]);

/**
 * The SQLSTATE classes that say the database, not the request, is at fault (docs, Appendix A):
 * 08 connection exception, 53 insufficient resources (disk full, too many connections), 57P
 * operator intervention (shutdown, crash recovery: "cannot connect now"), 58 system error (I/O),
 * 25006 read-only transaction (a standby after a failover), 40 after the retries, 28 the server
 * refusing the connection itself (pg_hba.conf, authentication: its configuration, not the request).
 */
function isStorageFault(code: string): boolean {
  return /^(08|53|57P|58|40|28)/.test(code) || code === "25006";
}

const UNAVAILABLE_MESSAGE = "the certificate store cannot commit right now; retry later";

/**
 * `e` as the error a caller should see: CaError "unavailable" when the database could not be
 * reached or refused for its own reasons, else `e` itself (a bug stays one). A pg DatabaseError
 * carries a SQLSTATE; anything else node-postgres throws on a query (ECONNREFUSED, "Connection
 * terminated unexpectedly", the pool's connection timeout, a query_timeout) is the connection
 * failing. The message never carries the pg error's text (it may name the database URL's host);
 * the cause keeps it for the logs.
 */
export function asStoreError(e: unknown): unknown {
  if (e instanceof CaError) return e;
  if (e instanceof pg.DatabaseError) {
    return typeof e.code === "string" && isStorageFault(e.code) ? new CaError("unavailable", UNAVAILABLE_MESSAGE, { cause: e }) : e;
  }
  if (e instanceof Error && isConnectionFailure(e)) return new CaError("unavailable", UNAVAILABLE_MESSAGE, { cause: e });
  return e;
}

/** node-postgres's ways of saying the connection failed (not the server refusing a statement). */
export function isConnectionFailure(e: Error): boolean {
  // The server's certificate not verifying, or a failed handshake: no connection was made.
  if (isTlsFailure(e)) return true;
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, …
  return /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connection error|not queryable/i.test(e.message);
}

/**
 * A connection of `pool` for the caller's exclusive use, and how to give it back. While checked
 * out, a connection that ends (the server restarted, pg_terminate_backend, a failover) fails the
 * query under way and also emits 'error' on the client; the pool listens only to idle clients, and
 * an 'error' event nobody listens to ends the process. The query's rejection is what the caller
 * acts on, so the event is only absorbed here, and the broken connection is dropped on release.
 */
export async function checkout(pool: pg.Pool): Promise<{ client: pg.PoolClient; release: (err?: Error) => void }> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (err: Error): void => {
    lost = err;
  };
  client.on("error", onError);
  return {
    client,
    release(err?: Error) {
      client.off("error", onError);
      client.release(err ?? lost);
    },
  };
}

/**
 * Runs `work` in one READ COMMITTED transaction on a connection of `pool` and commits it, unless
 * `work` returns `{ commit: false }`: then it is rolled back (an outcome that stores nothing, as
 * a SQLite savepoint rolled back). Retries on 40001/40P01. Errors reach the caller through
 * asStoreError: a connection that fails at any point leaves nothing committed, since PostgreSQL
 * rolls back a transaction whose connection ends before COMMIT.
 *
 * One case is unknowable from the client and is documented rather than hidden: the connection
 * failing after COMMIT was sent and before its answer. The transaction may then have committed;
 * the caller is told "unavailable" and a retry meets the stored token ("replayed") or its
 * Idempotency-Key (the certificate), as after any lost response.
 */
/**
 * Ends the transaction: sends `statements` (SQL text without parameters, several separated by
 * semicolons) and COMMIT in one simple-query message, one round trip, and resolves to the
 * statements' results in order (the COMMIT's left out). In READ COMMITTED each statement of the
 * message still takes its snapshot when it starts (docs, "Multiple Statements in a Simple
 * Query"), so a statement sees what a lock taken by the one before it waited for. If a statement
 * fails, the rest of the message, COMMIT included, is skipped and storeTransaction rolls back.
 * For the log appends (pg-audit-log.ts): the append lock is then held only while the server runs
 * the message, not across a round trip to the daemon.
 */
export type CommitWith = (statements: string) => Promise<pg.QueryResult[]>;

export async function storeTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient, commitWith: CommitWith) => Promise<{ result: T; commit: boolean }>,
  opts: { durable: boolean } = { durable: true },
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    let release: (err?: Error) => void;
    try {
      ({ client, release } = await checkout(pool));
    } catch (e) {
      throw asStoreError(e);
    }
    let broken: Error | undefined;
    try {
      // One round trip (a simple query may hold several statements; docs, "Multiple Statements
      // in a Simple Query"). Not durable: the COMMIT returns once its WAL record is written to
      // the server's WAL buffers, not flushed (docs, "Asynchronous Commit"); any later durable
      // commit flushes the WAL up to its own record, this one's included.
      try {
        await client.query(opts.durable ? BEGIN : `${BEGIN}; SET LOCAL synchronous_commit = off`);
      } catch (e) {
        // A pooled connection the server dropped while it sat idle (a restart, a failover) that
        // the pool has not noticed yet fails at its first statement: nothing was done, so
        // another connection may try.
        if (e instanceof Error && isConnectionFailure(e) && attempt < MAX_ATTEMPTS) {
          broken = e;
          continue;
        }
        throw e;
      }
      // Set once commitWith has sent its message: the transaction is then ended by it (or, if it
      // failed, rolled back below), and must not be committed a second time.
      let ended = false;
      const commitWith: CommitWith = async (statements) => {
        if (ended) throw new Error("the transaction was already ended");
        ended = true;
        const results = (await client.query(`${statements}; COMMIT`)) as unknown as pg.QueryResult[];
        return results.slice(0, -1);
      };
      const { result, commit } = await work(client, commitWith);
      if (ended && !commit) throw new Error("a transaction ended by commitWith cannot be rolled back");
      if (!ended) await client.query(commit ? "COMMIT" : "ROLLBACK");
      return result;
    } catch (e) {
      await client.query("ROLLBACK").catch((rollbackError: Error) => {
        // The connection is gone or unusable: it must not go back to the pool.
        broken = rollbackError;
      });
      const code = e instanceof pg.DatabaseError ? e.code : undefined;
      if (code !== undefined && RETRYABLE.has(code) && attempt < MAX_ATTEMPTS && broken === undefined) continue;
      throw asStoreError(e);
    } finally {
      release(broken);
    }
  }
}

/** One statement outside a transaction (a read, or a single-statement write), errors mapped. */
export async function query<R extends pg.QueryResultRow>(pool: pg.Pool, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
  // A read is safe to send again: once, on another connection, when the first one turns out to
  // have been dropped by the server while idle (see storeTransaction). A write is not: its fate
  // is unknown when the connection fails under it.
  const read = /^\s*SELECT\b/i.test(text);
  for (let attempt = 1; ; attempt++) {
    try {
      return await pool.query<R>(text, values);
    } catch (e) {
      if (read && attempt === 1 && e instanceof Error && isConnectionFailure(e)) continue;
      throw asStoreError(e);
    }
  }
}

/**
 * Runs `work` in one transaction on one pooled client: BEGIN `mode`, COMMIT if it resolves,
 * ROLLBACK if it throws (then rethrows, unmapped). A client whose ROLLBACK fails too (connection
 * gone) is destroyed rather than handed back to the pool in an unknown state. (The CRL, OCSP,
 * rate-limit and renewal-window stores' form; storeTransaction above adds the retries and the
 * "unavailable" mapping the issuance path needs.)
 */
export async function inTransaction<T>(pool: pg.Pool, mode: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const { client, release } = await checkout(pool);
  try {
    await client.query(`BEGIN ${mode}`);
  } catch (e) {
    release(e as Error);
    throw e;
  }
  let broken: Error | undefined;
  try {
    try {
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (e) {
      await client.query("ROLLBACK").catch((rollbackError: Error) => {
        broken = rollbackError;
      });
      throw e;
    }
  } finally {
    release(broken);
  }
}
