import type pg from "pg";
import { CRL_REASONS, type RevocationReason } from "../../core/revocation-reason.js";
import type { SerialHex } from "../../core/serial.js";
import type { RevocationEvent, RevocationOutcome } from "../ports.js";
import { takeAppendTurn } from "./pg-append-lock.js";
import { appendAuditEntry } from "./pg-audit-log.js";
import { REVOCATION_CHANNEL } from "./pg-revocation-notifications.js";


/** RFC 5280 §5.3.1 superseded: the reason an instance's older certificates are revoked with. */
export const SUPERSEDED = CRL_REASONS.superseded as RevocationReason;

/** A certificate flipped to revoked in this transaction, its log rows still to be appended. */
export interface Flipped {
  serial: string;
  issuer_key_id: string;
}

/**
 * Revokes one certificate inside the caller's READ COMMITTED transaction: the PostgreSQL form of
 * SqliteStore.revokeCertificate. The conditional UPDATE is the atomic "valid → revoked" flip: a
 * second revoker blocks on the row lock, and once the first commits, PostgreSQL re-evaluates
 * `status = 'valid'` on the new row version (docs 13.2.1) and updates nothing, so the first
 * revocation's time and reason win on every replica. The read that explains a no-op runs after
 * that wait, so it sees the winner's row.
 */
export async function revokeIn(client: pg.ClientBase, serial: SerialHex, revokedAt: Date, reason: RevocationReason): Promise<RevocationOutcome> {
  const flipped = await client.query<Flipped>(
    "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 WHERE serial = $3 AND status = 'valid' RETURNING serial, issuer_key_id",
    [revokedAt.getTime(), reason, serial],
  );
  if (flipped.rows.length === 1) {
    await logRevocationsIn(client, flipped.rows, revokedAt, reason);
    return { outcome: "revoked", revokedAt, reason };
  }
  const { rows } = await client.query<{ status: string; revoked_at: number | null; revocation_reason: number | null }>(
    "SELECT status, revoked_at, revocation_reason FROM certificates WHERE serial = $1",
    [serial],
  );
  const r = rows[0];
  if (!r) return { outcome: "not_found" };
  if (r.status !== "revoked" || r.revoked_at === null) throw new Error(`certificate ${serial} could not be revoked (status ${r.status})`);
  return { outcome: "already_revoked", revokedAt: new Date(r.revoked_at), reason: r.revocation_reason };
}

/**
 * A new attestation of `instance`: flips to revoked (reason superseded, RFC 5280 §5.3.1: 4) every
 * other live certificate `provisioner` bound to it, as SqliteStore's #retireInstance, inside the
 * transaction storing the new certificate. The rows are locked in serial order (FOR UPDATE in the
 * subquery), so two such transactions wait for each other rather than deadlock. Returns them in
 * serial order; the caller appends their log rows with logRevocationsIn once it has taken every
 * row lock of its transaction (the append lock comes last: pg-append-lock.ts).
 */
export async function retireInstanceIn(
  client: pg.ClientBase,
  cert: { serial: string; provisioner: string; instance: string; createdAt: Date },
): Promise<Flipped[]> {
  const at = cert.createdAt.getTime();
  const { rows } = await client.query<Flipped>(
    `UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2
     WHERE serial IN (SELECT serial FROM certificates WHERE provisioner = $3 AND instance = $4 AND status = 'valid' AND not_after >= $1 AND serial <> $5
                      ORDER BY serial FOR UPDATE)
       AND status = 'valid'
     RETURNING serial, issuer_key_id`,
    [at, SUPERSEDED, cert.provisioner, cert.instance, cert.serial],
  );
  return rows.sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0));
}

/**
 * The revocation-log row, its NOTIFY and its "revoked" issuance-log entry for each flipped
 * certificate, in order, under the append lock: seqs then become visible in commit order (see
 * pg-append-lock.ts), which a follower reading `seq > last` relies on.
 */
export async function logRevocationsIn(client: pg.ClientBase, flipped: readonly Flipped[], revokedAt: Date, reason: RevocationReason): Promise<void> {
  if (flipped.length === 0) return;
  await takeAppendTurn(client);
  for (const f of flipped) {
    const { rows } = await client.query<{ seq: number }>(
      "INSERT INTO revocation_log (serial, issuer_key_id, revoked_at, reason) VALUES ($1, $2, $3, $4) RETURNING seq",
      [f.serial, f.issuer_key_id, revokedAt.getTime(), reason],
    );
    await client.query("SELECT pg_notify($1, $2)", [REVOCATION_CHANNEL, String(rows[0]!.seq)]);
    await appendAuditEntry(client, { kind: "revoked", serial: f.serial, issuer: f.issuer_key_id, reason }, revokedAt);
  }
}

export async function latestRevocationSeqOf(db: pg.Pool | pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ seq: number }>("SELECT COALESCE(MAX(seq), 0) AS seq FROM revocation_log");
  return rows[0]!.seq;
}

export async function revocationsAfterOf(db: pg.Pool | pg.ClientBase, seq: number, limit: number): Promise<RevocationEvent[]> {
  const { rows } = await db.query<{ seq: number; serial: string; issuer_key_id: string; revoked_at: number; reason: number | null; crl_shard: number | null }>(
    `SELECT l.seq, l.serial, l.issuer_key_id, l.revoked_at, l.reason, c.crl_shard
     FROM revocation_log l JOIN certificates c ON c.serial = l.serial WHERE l.seq > $1 ORDER BY l.seq LIMIT $2`,
    [seq, limit],
  );
  return rows.map((r) => ({
    seq: r.seq,
    serial: r.serial as SerialHex,
    issuerKeyId: r.issuer_key_id,
    revokedAt: new Date(r.revoked_at),
    reason: r.reason,
    crlShard: r.crl_shard,
  }));
}
