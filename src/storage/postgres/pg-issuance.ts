import type pg from "pg";
import type { CommitOutcome, IssuanceCommit } from "../ports.js";
import { commitAuditEntry } from "./pg-audit-log.js";
import { logRevocationsIn, retireInstanceIn, SUPERSEDED, type Flipped } from "./pg-revocations.js";
import { CERT_COLUMNS, certificateValues } from "./pg-rows.js";
import type { CommitWith } from "./pg-transaction.js";

const INSERT_CERT = `INSERT INTO certificates (${CERT_COLUMNS}) VALUES (${CERT_COLUMNS.split(",").map((_, i) => `$${i + 1}`).join(", ")})
  ON CONFLICT (serial) DO NOTHING`;

/**
 * SQLite's first two steps in one statement (one round trip): is the serial stored already (then
 * "serial_collision", and the token is not claimed), else the token's claim by INSERT … ON
 * CONFLICT, which decides a race for it (`claimed` false: "replayed"). The claim's source row
 * exists only if the serial was not found, so it is never attempted, nor waited for, after a
 * stored serial, as in the two statements it replaces. The casts: an INSERT … SELECT does not
 * give its parameters the target columns' types.
 */
const CLAIM_TOKEN = `WITH stored AS (SELECT 1 FROM certificates WHERE serial = $1),
  claimed AS (
    INSERT INTO used_tokens (token_id, provisioner, expires_at, used_at)
    SELECT $2::text, $3::text, $4::bigint, $5::bigint WHERE NOT EXISTS (SELECT 1 FROM stored)
    ON CONFLICT (token_id) DO NOTHING RETURNING 1
  )
SELECT EXISTS (SELECT 1 FROM stored) AS stored, EXISTS (SELECT 1 FROM claimed) AS claimed`;

/**
 * One issuance's writes inside the caller's READ COMMITTED transaction (pg-transaction.ts): the
 * PostgreSQL form of SqliteStore's #applyIssuance, with the same outcome in the same situation.
 * Anything but "committed" is rolled back by the caller, as SQLite rolls back to the commit's
 * savepoint.
 *
 * Several replicas may commit at once, so no outcome rests on a read followed by a write: each
 * unique thing (token, serial, idempotency key) is claimed by an INSERT … ON CONFLICT on its
 * unique index. A concurrent uncommitted claim of the same key makes PostgreSQL wait for that
 * transaction and then either insert (it rolled back) or do nothing (it committed): two replicas
 * spending one token get one "committed" and one "replayed". The serial's lookup before the token's
 * claim (CLAIM_TOKEN) only reproduces SQLite's precedence (a stored serial is a "serial_collision"
 * before the token is looked at); the serial's INSERT … ON CONFLICT is what decides a race.
 *
 * The log rows go last (the retired certificates' revocations, then the "issued" entry): they take
 * the append lock (pg-append-lock.ts), which must be the transaction's last lock and is held to
 * COMMIT. The "issued" entry is sent in one message with the COMMIT (commitWith), so the turn is
 * held for the server's INSERT and WAL flush, not for a round trip to the daemon; a commit
 * without an entry is left to the caller to commit.
 *
 * One transaction (one WAL flush at COMMIT) per issuance. The flush happens while the turn is
 * held (the lock is released after the commit record is flushed), so two issuances' flushes are
 * never shared (docs/benchmarks.md, "PostgreSQL (issue 17)": ~1 flush per certificate); sharing
 * one durable COMMIT among several issuances, as sqlite/issuance-group-commit.ts does, is what
 * would lift that ceiling, and is left undone.
 */
export async function applyIssuance(client: pg.ClientBase, c: IssuanceCommit, commitWith: CommitWith): Promise<CommitOutcome> {
  const cert = c.certificate;
  const t = c.tokenUse;
  const first = t
    ? await client.query<{ stored: boolean; claimed: boolean }>(CLAIM_TOKEN, [cert.serial, t.tokenId, t.provisioner, t.expiresAt.getTime(), cert.createdAt.getTime()])
    : await client.query<{ stored: boolean; claimed: boolean }>("SELECT EXISTS (SELECT 1 FROM certificates WHERE serial = $1) AS stored, true AS claimed", [cert.serial]);
  if (first.rows[0]!.stored) return "serial_collision";
  if (!first.rows[0]!.claimed) return "replayed";
  const inserted = await client.query(INSERT_CERT, certificateValues(cert));
  if (inserted.rowCount === 0) return "serial_collision";
  // The predecessor is superseded by this renewal, once: a concurrent renewal of the same
  // certificate waits on its row lock, then finds superseded_by set (the WHERE is re-checked on
  // the committed row) and stores nothing.
  if (c.supersedes !== undefined) {
    const r = await client.query("UPDATE certificates SET superseded_by = $1 WHERE serial = $2 AND superseded_by IS NULL", [cert.serial, c.supersedes]);
    if (r.rowCount === 0) return "superseded";
  }
  let retired: Flipped[] = [];
  if (c.retireInstance && cert.instance) {
    retired = await retireInstanceIn(client, { serial: cert.serial, provisioner: cert.provisioner, instance: cert.instance, createdAt: cert.createdAt });
  }
  if (c.supersedesPurpose) {
    await client.query("UPDATE certificates SET superseded_by = $1 WHERE provisioner = $2 AND superseded_by IS NULL AND serial <> $1 AND (instance IS NULL OR instance = $3)", [
      cert.serial,
      cert.provisioner,
      cert.instance ?? null,
    ]);
  }
  if (c.idempotency) {
    const i = c.idempotency;
    // As SQLite's #upsertIdempotency: a live row of the scope and key is left alone (conflict);
    // an expired one not pruned yet is taken over, judged at the commit's own time.
    const r = await client.query(
      `INSERT INTO idempotency_keys (provisioner, subject, key, request_hash, token_id, serial, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (provisioner, subject, key) DO UPDATE SET
         request_hash = excluded.request_hash, token_id = excluded.token_id, serial = excluded.serial,
         expires_at = excluded.expires_at, created_at = excluded.created_at
       WHERE idempotency_keys.expires_at <= excluded.created_at`,
      [i.provisioner, i.subject, i.key, i.requestHash, i.tokenId, i.serial, i.expiresAt.getTime(), cert.createdAt.getTime()],
    );
    if (r.rowCount === 0) return "idempotency_conflict";
  }
  // The logs last, under the append lock, in SQLite's order: the retired certificates' revocations,
  // then the "issued" entry.
  await logRevocationsIn(client, retired, cert.createdAt, SUPERSEDED);
  if (c.audit) await commitAuditEntry(commitWith, c.audit, cert.createdAt);
  return "committed";
}
