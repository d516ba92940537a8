import type pg from "pg";
import type { CommitOutcome, IssuanceCommit } from "../ports.js";
import { commitAuditEntry } from "./pg-audit-log.js";
import { logRevocationsIn, retireInstanceIn, SUPERSEDED, type Flipped } from "./pg-revocations.js";
import { CERT_COLUMNS, certificateValues } from "./pg-rows.js";
import type { CommitWith } from "./pg-transaction.js";

const CERT_VALUES = CERT_COLUMNS.split(",").map((_, i) => `$${i + 1}`).join(", ");
const N_CERT = CERT_COLUMNS.split(",").length;
/** The certificate's created_at parameter: also the token's used_at and the idempotency row's created_at. */
const CREATED_AT = `$${CERT_COLUMNS.split(",").map((c) => c.trim()).indexOf("created_at") + 1}::bigint`;

/**
 * SQLite's first steps in one statement (one round trip), each a data-modifying CTE whose
 * RETURNING says whether it took effect:
 *   stored      the serial is stored already: "serial_collision", and the token is not claimed;
 *   claimed     the token's claim, INSERT … ON CONFLICT, which decides a race for it (none:
 *               "replayed"); attempted only when the serial was not found, so it is never
 *               waited for after a stored serial, as in SQLite's order;
 *   cert        the certificate, INSERT … ON CONFLICT (serial) DO NOTHING: a concurrent insert of
 *               the serial makes it wait and insert nothing ("serial_collision");
 *   superseded  a renewal's predecessor marked, once: a concurrent renewal of it waits on its row
 *               lock, then finds superseded_by set (the WHERE is re-checked on the committed
 *               row) and marks nothing ("superseded");
 *   idem        the Idempotency-Key, as SQLite's #upsertIdempotency: a live row of the scope and
 *               key is left alone ("idempotency_conflict"); an expired one not pruned yet is
 *               taken over, judged at the commit's own time.
 * Each later step runs only if the one before took effect (EXISTS on its RETURNING), so the
 * outcome is the first step that did not, in SQLite's precedence; whatever an earlier step did is
 * rolled back by the caller for any outcome but "committed". The certificate's own INSERT is a
 * VALUES, so its parameters take the columns' types; it runs even after a failed claim (its
 * serial is a fresh random one: nothing to wait for), and is rolled back with it. The claim's
 * casts: an INSERT … SELECT does not give its parameters the target columns' types. The
 * idempotency row references the certificate inserted by the same statement: the foreign-key
 * check is an AFTER trigger, run at the end of the statement, when the row is there.
 */
function firstStepsSql(o: { token: boolean; supersedes: boolean; idempotency: boolean }): string {
  let n = N_CERT;
  const p = () => `$${++n}`;
  const parts = [`stored AS (SELECT 1 FROM certificates WHERE serial = $1)`, `cert AS (INSERT INTO certificates (${CERT_COLUMNS}) VALUES (${CERT_VALUES}) ON CONFLICT (serial) DO NOTHING RETURNING 1)`];
  let after = "EXISTS (SELECT 1 FROM cert)";
  if (o.token) {
    parts.push(`claimed AS (
    INSERT INTO used_tokens (token_id, provisioner, expires_at, used_at)
    SELECT ${p()}::text, ${p()}::text, ${p()}::bigint, ${CREATED_AT} WHERE NOT EXISTS (SELECT 1 FROM stored)
    ON CONFLICT (token_id) DO NOTHING RETURNING 1)`);
    after = `EXISTS (SELECT 1 FROM claimed) AND ${after}`;
  }
  if (o.supersedes) {
    parts.push(`superseded AS (UPDATE certificates SET superseded_by = $1 WHERE serial = ${p()} AND superseded_by IS NULL AND ${after} RETURNING 1)`);
    after = `${after} AND EXISTS (SELECT 1 FROM superseded)`;
  }
  if (o.idempotency) {
    parts.push(`idem AS (
    INSERT INTO idempotency_keys (provisioner, subject, key, request_hash, token_id, serial, expires_at, created_at)
    SELECT ${p()}::text, ${p()}::text, ${p()}::text, ${p()}::text, ${p()}::text, $1::text, ${p()}::bigint, ${CREATED_AT} WHERE ${after}
    ON CONFLICT (provisioner, subject, key) DO UPDATE SET
      request_hash = excluded.request_hash, token_id = excluded.token_id, serial = excluded.serial,
      expires_at = excluded.expires_at, created_at = excluded.created_at
    WHERE idempotency_keys.expires_at <= excluded.created_at
    RETURNING 1)`);
  }
  const flag = (cte: string, present: boolean) => (present ? `EXISTS (SELECT 1 FROM ${cte})` : "true");
  return `WITH ${parts.join(",\n  ")}
SELECT EXISTS (SELECT 1 FROM stored) AS stored, ${flag("claimed", o.token)} AS claimed, EXISTS (SELECT 1 FROM cert) AS inserted,
       ${flag("superseded", o.supersedes)} AS superseded, ${flag("idem", o.idempotency)} AS idem`;
}

/** The statement for each combination of optional steps, made once. */
const FIRST_STEPS = new Map<string, string>();
function firstSteps(o: { token: boolean; supersedes: boolean; idempotency: boolean }): string {
  const key = `${o.token}${o.supersedes}${o.idempotency}`;
  let sql = FIRST_STEPS.get(key);
  if (sql === undefined) FIRST_STEPS.set(key, (sql = firstStepsSql(o)));
  return sql;
}

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
 * claim only reproduces SQLite's precedence (a stored serial is a "serial_collision" before the
 * token is looked at); the serial's INSERT … ON CONFLICT is what decides a race. Those claims,
 * the certificate and a renewal's predecessor are one statement (firstSteps): with BEGIN and the
 * COMMIT that carries the log entry, three round trips per certificate, whatever options it has
 * (the rare re-attestation and serving-certificate steps below add theirs).
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
  const i = c.idempotency;
  const values = certificateValues(cert);
  if (t) values.push(t.tokenId, t.provisioner, t.expiresAt.getTime());
  if (c.supersedes !== undefined) values.push(c.supersedes);
  if (i) values.push(i.provisioner, i.subject, i.key, i.requestHash, i.tokenId, i.expiresAt.getTime());
  const { rows } = await client.query<{ stored: boolean; claimed: boolean; inserted: boolean; superseded: boolean; idem: boolean }>(
    firstSteps({ token: t !== undefined, supersedes: c.supersedes !== undefined, idempotency: i !== undefined }),
    values,
  );
  const r = rows[0]!;
  if (r.stored) return "serial_collision";
  if (!r.claimed) return "replayed";
  if (!r.inserted) return "serial_collision";
  if (!r.superseded) return "superseded";
  if (!r.idem) return "idempotency_conflict";
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
  // The logs last, under the append lock, in SQLite's order: the retired certificates' revocations,
  // then the "issued" entry.
  await logRevocationsIn(client, retired, cert.createdAt, SUPERSEDED);
  if (c.audit) await commitAuditEntry(commitWith, c.audit, cert.createdAt);
  return "committed";
}
