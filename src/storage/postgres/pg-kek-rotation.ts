import pg from "pg";
import { OperatorError } from "../../core/errors.js";
import type { Secret } from "../../core/secret.js";
import { kekIdOfParams, newPassphraseKek, type Kek } from "../../signing/kek.js";
import { openWrappedKey, rewrapKey } from "../../signing/wrapped-key.js";
import { checkout, isConnectionFailure } from "./pg-transaction.js";

/*
 * `fleetca rotate kek` on PostgreSQL: every ca_keys row re-wrapped under a new KEK and the new
 * KEK's parameters recorded as kek_params version N+1, in ONE transaction. PostgreSQL rolls back a
 * transaction whose connection ends before COMMIT, so a crash, a kill or a lost connection at any
 * point leaves the old rows and the old version (the old passphrase works), and a COMMIT leaves
 * all of the new ones (the new passphrase works): nothing like the file protocol of
 * signing/kek-rotation.ts is needed.
 *
 * Concurrency. The transaction first takes `LOCK TABLE kek_params IN EXCLUSIVE MODE`: it
 * conflicts with itself (a second rotation waits, then finds the version it opened is no longer
 * the newest and gives up) and with the ROW SHARE lock PgKeyStore.generate takes by reading the
 * newest version FOR SHARE in the transaction that inserts a new key (so a key being added either
 * committed before the rotation read ca_keys, and is re-wrapped, or waits and then finds the KEK
 * rotated, and refuses). Plain reads (replicas loading keys) are not blocked: EXCLUSIVE allows
 * ACCESS SHARE (PostgreSQL docs, "Explicit Locking", table-level lock modes).
 */

const WHERE = "the database";

export interface PgKekRotationResult {
  rewrapped: string[];
  from: { id: string; version: number };
  to: { id: string; version: number };
}

/**
 * Re-wraps every key in ca_keys under a new passphrase KEK (version current + 1) and records its
 * parameters, in one transaction. `current` is the KEK the current passphrase opened (openPgKek);
 * the rotation refuses if kek_params' newest version is no longer that one.
 */
export async function rotatePgKek(pool: pg.Pool, current: Kek, newPassphrase: Secret, now: Date): Promise<PgKekRotationResult> {
  // scrypt (~0.1 s) before the transaction: the lock is held for the re-wrapping only.
  const next = newPassphraseKek(newPassphrase, current.version + 1, null);
  const { client, release } = await checkout(pool);
  let broken: Error | undefined;
  let committing = false;
  try {
    await client.query("BEGIN ISOLATION LEVEL READ COMMITTED");
    await client.query("LOCK TABLE kek_params IN EXCLUSIVE MODE");
    // Read after the lock is granted: under READ COMMITTED each statement sees what was committed
    // before it began, so a rotation that won the lock before us is seen here.
    const newest = await client.query<{ version: string; params: string }>("SELECT version::text AS version, params FROM kek_params ORDER BY version DESC LIMIT 1");
    const row = newest.rows[0];
    if (!row || kekIdOfParams(row.params, WHERE) !== current.id) {
      throw new OperatorError(
        `the KEK changed meanwhile: kek_params' newest version is ${row ? row.version : "gone"}, not version ${current.version} this rotation started from (another "fleetca rotate kek" finished first); nothing changed: run it again with the current passphrase`,
      );
    }
    // No FOR UPDATE: rows are never updated but by a rotation (which holds the lock above), and a
    // new row cannot be inserted while it is held (PgKeyStore.generate); each UPDATE below locks its row.
    const keys = await client.query<{ name: string; record: string }>("SELECT name, record FROM ca_keys ORDER BY name");
    if (keys.rows.length === 0) throw new OperatorError("no keys in the database (ca_keys is empty): nothing to rotate");
    for (const { name, record } of keys.rows) {
      const where = `key ${name} in the database`;
      // Every key must unwrap with the current KEK first: a rotation must not carry a broken or
      // foreign row over to the new KEK. And the re-wrapped row must open with the new one, to
      // the same public key, before it replaces the old: nothing unreadable is ever committed.
      const before = openWrappedKey(record, name, current, where, "row");
      const rewrapped = rewrapKey(record, name, current, next.kek, where, "row");
      const after = openWrappedKey(rewrapped, name, next.kek, where, "row");
      if (!Buffer.from(after.publicKeySpki).equals(Buffer.from(before.publicKeySpki))) {
        throw new Error(`re-wrapping ${name} changed its public key`);
      }
      await client.query("UPDATE ca_keys SET record = $2 WHERE name = $1", [name, rewrapped]);
    }
    await client.query("INSERT INTO kek_params (version, params, created_at) VALUES ($1, $2, $3)", [next.kek.version, next.paramsFile, now.getTime()]);
    committing = true;
    await client.query("COMMIT");
    return {
      rewrapped: keys.rows.map((r) => r.name),
      from: { id: current.id, version: current.version },
      to: { id: next.kek.id, version: next.kek.version },
    };
  } catch (e) {
    await client.query("ROLLBACK").catch((rollbackError: Error) => {
      broken = rollbackError;
    });
    if (e instanceof OperatorError) throw e;
    if (committing) throw await afterFailedCommit(pool, next.kek, e);
    if (isConnectionLoss(e)) {
      throw new OperatorError(`the database connection failed during the rotation (${describe(e)}); nothing changed (PostgreSQL rolled the transaction back): the current passphrase still opens the keys; run it again`, { cause: e });
    }
    throw e;
  } finally {
    release(broken);
  }
}

/**
 * The connection failed with COMMIT sent and no answer: the transaction may or may not have
 * committed. Asked on another connection, kek_params says which (the new version's id is ours
 * only if our COMMIT went through); if the database cannot be asked, the operator is told how.
 */
async function afterFailedCommit(pool: pg.Pool, next: Kek, e: unknown): Promise<OperatorError> {
  try {
    const r = await pool.query<{ params: string }>("SELECT params FROM kek_params WHERE version = $1", [next.version]);
    const committed = r.rows[0] !== undefined && kekIdOfParams(r.rows[0].params, WHERE) === next.id;
    return committed
      ? new OperatorError(`the rotation committed (kek_params version ${next.version}, ${next.id}), but the answer to COMMIT was lost (${describe(e)}); the new passphrase now opens the keys`, { cause: e })
      : new OperatorError(`the database connection failed at COMMIT (${describe(e)}); nothing changed: the current passphrase still opens the keys; run it again`, { cause: e });
  } catch {
    return new OperatorError(
      `the database connection failed at COMMIT (${describe(e)}) and the database cannot be asked now: the rotation may or may not have committed; once it answers, kek_params' newest version says which (version ${next.version}: committed, the new passphrase opens the keys)`,
      { cause: e },
    );
  }
}

function isConnectionLoss(e: unknown): boolean {
  // 08xxx connection exceptions, 57P0x the server shutting down or terminating the session.
  if (e instanceof pg.DatabaseError) return typeof e.code === "string" && /^(08|57P)/.test(e.code);
  return e instanceof Error && isConnectionFailure(e);
}

/** A short, secret-free reason: the SQLSTATE or the socket error, never the server's text (it may name the host). */
function describe(e: unknown): string {
  if (e instanceof pg.DatabaseError) return `SQLSTATE ${e.code ?? "unknown"}`;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (typeof code === "string") return code;
  return /Connection terminated/i.test((e as Error)?.message ?? "") ? "connection terminated" : "connection lost";
}
