import { readFileSync } from "node:fs";
import pg from "pg";
import { OperatorError } from "../../core/errors.js";
import { assertUrlTlsFilesReadable } from "./pg-url-tls.js";

/** What `storage: { type: postgres, … }` gives the adapter (config/schema.ts). */
export interface PgSettings {
  /** postgres://user@host:port/db; a password in it works but passwordFile keeps it out of the config. */
  url: string;
  /** A file holding the password (first line), read once at open: never logged, never in the URL. */
  passwordFile?: string;
  /** Connections this process keeps at most (node-postgres Pool `max`). */
  pool?: number;
  /** How errors name the URL to the operator: the config key, or migrate-store's `--to`. */
  urlName?: string;
}

/** PostgreSQL's type OIDs (pg_type.oid) the adapter parses itself. */
const INT8_OID = 20;

/**
 * Every BIGINT the schema holds is unix milliseconds, a sequence number or a count: all far below
 * 2^53, so a JavaScript number holds them exactly. node-postgres returns int8 as a string by
 * default (it cannot know that); this parser is per pool, not the process-wide pg.types, so
 * nothing else that loads pg is changed. A value beyond 2^53 would be a corrupt row: it throws
 * rather than round silently.
 */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`BIGINT ${text} is outside the range fleetca stores`);
  return n;
}

const typeParsers = {
  getTypeParser(oid: number, format?: "text" | "binary"): (value: string) => unknown {
    if (oid === INT8_OID && format !== "binary") return parseInt8;
    return pg.types.getTypeParser(oid, format as "text");
  },
} as pg.CustomTypesConfig;

/**
 * Where and as whom to connect: the URL, and the password from storage.passwordFile when there
 * is one (read at each call: a rotated password is picked up by the next connection made).
 * Every connection fleetca opens (the pool's, the LISTEN session's, migrate-store's) is made from
 * this, and TLS comes from the URL's query alone (pg-url-tls.ts): no `ssl` option is set here,
 * which would be merged under the URL's and differ between connections.
 */
export function pgConnection(s: PgSettings): { connectionString: string; password?: string } {
  assertUrlTlsFilesReadable(s.url, s.urlName);
  if (s.passwordFile === undefined) return { connectionString: s.url };
  try {
    const password = readFileSync(s.passwordFile, "utf8").split(/\r?\n/, 1)[0]!;
    return { connectionString: s.url, password };
  } catch (err) {
    throw new OperatorError(`storage.passwordFile ${s.passwordFile}: ${(err as NodeJS.ErrnoException).code ?? "unreadable"}`);
  }
}

/**
 * Opens the connection pool the PostgreSQL adapter runs on. Connecting is lazy (the first query),
 * so a database that is down makes queries fail with "unavailable", not the open. An idle client's
 * error (the server restarted, a failover) is caught here: node-postgres emits it on the pool, and
 * an unhandled 'error' event would end the process; the next query simply gets a new connection.
 */
export function openPgPool(s: PgSettings, onIdleError?: (err: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    ...pgConnection(s),
    max: s.pool ?? 10,
    types: typeParsers,
    // A connection attempt to a database that is down gives up rather than hang a request.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
  });
  pool.on("error", (err) => onIdleError?.(err));
  return pool;
}
