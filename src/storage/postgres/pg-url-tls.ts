import { readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import { OperatorError } from "../../core/errors.js";

/**
 * The TLS parameters of storage.url's query, as node-postgres reads them. fleetca passes the URL
 * as `connectionString` and never an `ssl` option of its own, so the pool and the LISTEN session
 * (pg-revocation-notifications.ts) both get exactly what the URL says; pg-connection-string 2.x
 * parses it at every new connection (index.js, `parse`):
 *
 * - any of sslmode, sslrootcert, sslcert, sslkey turns TLS on; without sslrootcert the server is
 *   verified against Node's bundled public CAs (not libpq's ~/.postgresql/root.crt);
 * - sslmode=verify-full: the chain against sslrootcert and the host name against the certificate;
 * - sslmode=disable: no TLS; no-verify: TLS without any verification (node-postgres only);
 * - sslmode=prefer, require, verify-ca: *also verify-full* in node-postgres 8 (and a multi-line
 *   process warning), but libpq's weaker meaning once pg 9 ships, or now with uselibpqcompat=true
 *   (require: no verification unless sslrootcert is given, then as verify-ca; verify-ca: the
 *   chain but not the name; prefer: TLS without verification, never libpq's plaintext fallback);
 * - sslrootcert, sslcert, sslkey are file paths read by node-postgres relative to the process's
 *   working directory, not to the config file.
 * - With no TLS parameter in the URL, node-postgres falls back to the PGSSLMODE environment variable.
 *
 * So the accepted values are the ones whose meaning does not depend on the pg version.
 */
const STABLE_MODES = new Set(["disable", "verify-full", "no-verify"]);
const LIBPQ_MODES = new Set(["prefer", "require", "verify-ca"]);
const FILE_PARAMS = ["sslrootcert", "sslcert", "sslkey"] as const;

/** What is wrong with the URL's TLS parameters, in one line; null when nothing is. */
export function urlTlsProblem(u: URL): string | null {
  const mode = u.searchParams.get("sslmode");
  const compat = u.searchParams.get("uselibpqcompat") === "true";
  if (mode !== null && !STABLE_MODES.has(mode) && !LIBPQ_MODES.has(mode)) {
    return `sslmode=${mode}: expected verify-full (recommended), disable, no-verify, or with uselibpqcompat=true prefer, require or verify-ca`;
  }
  if (mode !== null && LIBPQ_MODES.has(mode) && !compat) {
    return `sslmode=${mode} means verify-full in node-postgres 8 and libpq's weaker ${mode} in its next major: write sslmode=verify-full (recommended), or uselibpqcompat=true&sslmode=${mode} for libpq's meaning`;
  }
  if (compat && mode === "verify-ca" && !u.searchParams.get("sslrootcert")) return "sslmode=verify-ca needs sslrootcert (the CA the server's certificate must chain to)";
  for (const p of FILE_PARAMS) {
    const path = u.searchParams.get(p);
    if (path !== null && !isAbsolute(path)) return `${p}=${path}: must be an absolute path (node-postgres reads it relative to the working directory, not the config)`;
  }
  return null;
}

/**
 * Reads each file the URL's query names, so an unreadable one is an OperatorError naming the
 * parameter and path (node-postgres would fail the first connection with a bare ENOENT). Never
 * the file's content in the message: sslkey is a private key.
 */
export function assertUrlTlsFilesReadable(url: string, urlName = "storage.url"): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return; // the config schema refuses it; migrate-store's --to fails in node-postgres with its own message
  }
  for (const p of FILE_PARAMS) {
    const path = u.searchParams.get(p);
    if (path === null) continue;
    try {
      readFileSync(path);
    } catch (err) {
      throw new OperatorError(`${urlName} ${p} ${path}: ${(err as NodeJS.ErrnoException).code ?? "unreadable"}`);
    }
  }
}

/** Node's certificate-verification error codes (OpenSSL's X509_V_ERR_* names, and the host name check). */
const VERIFY_CODES = /^(ERR_TLS_CERT_ALTNAME_INVALID|UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_|HOSTNAME_MISMATCH|INVALID_CA|PATH_LENGTH_EXCEEDED|INVALID_PURPOSE)/;

/**
 * True when `e` is the TLS layer failing, not the network nor the server's SQL: the server's
 * certificate did not verify, the handshake failed (ERR_SSL_*, ERR_TLS_*), or the server does not
 * speak TLS at all (node-postgres's own messages on the SSLRequest answer).
 */
export function isTlsFailure(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof code === "string" && (VERIFY_CODES.test(code) || /^ERR_(SSL|TLS)_/.test(code))) return true;
  return /^(The server does not support SSL connections|There was an error establishing an SSL connection)$/.test(e.message);
}

/**
 * The operator's one line for a connection PostgreSQL or its TLS refused at open: which side
 * refused and what to check. Null for other failures (down, unreachable), which stay "unavailable".
 * The server's own FATAL text (pg_hba, authentication) names host, user and database, never a
 * password; Node's verification messages name the host and the certificate's names.
 */
export function connectRefusal(e: unknown, urlName = "storage.url"): string | null {
  if (!(e instanceof Error)) return null;
  if (isTlsFailure(e)) {
    const code = (e as NodeJS.ErrnoException).code;
    if (/does not support SSL/.test(e.message)) return `PostgreSQL TLS: the server does not accept TLS connections (ssl = off); fix the server or ${urlName}'s sslmode`;
    return `PostgreSQL TLS verification failed: ${e.message}${code ? ` (${code})` : ""}; check ${urlName}'s sslrootcert (the CA of the server's certificate) and that the URL's host is a name in that certificate`;
  }
  const sqlstate = (e as { code?: unknown }).code;
  // 28000 invalid_authorization_specification (pg_hba.conf refused), 28P01 invalid_password.
  if (sqlstate === "28000" || sqlstate === "28P01") {
    const hint = /no encryption/.test(e.message) ? ` (the server requires TLS: add sslmode=verify-full&sslrootcert=/path/ca.pem to ${urlName})` : "";
    return `PostgreSQL refused the connection: ${e.message}${hint}`;
  }
  return null;
}
