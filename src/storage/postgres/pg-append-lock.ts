import type { ClientBase } from "pg";

/**
 * The key of the transaction-level advisory lock under which every append to the two logs readers
 * follow by position is made: the issuance log (audit_log.idx, a Merkle tree over a prefix, RFC
 * 9162 §2.1) and the revocation log (revocation_log.seq, which the revocation feed and the CRL
 * publishers read as `seq > last`). "fleetlog" in ASCII, read as a number; like pg-schema.ts's
 * migration lock it is per database, so every replica of a deployment takes turns on it.
 *
 * Why a lock: PostgreSQL assigns an identity value (nextval) at INSERT, not at COMMIT, and
 * MAX(idx) + 1 read by two transactions at once is the same number. Without turns, replica A could
 * take seq 6, replica B seq 7, B commit first: a reader polling `seq > 5` sees 7, moves its mark
 * to 7, and never sees 6 when A commits; for the issuance log a tree head signed over 8 entries
 * while entry 6 is missing would be a lie. With the lock taken just before the append and held to
 * COMMIT (or ROLLBACK: pg_advisory_xact_lock cannot be released early, and an error or a dropped
 * connection releases it), the next appender is granted it only after the previous one's rows are
 * visible (READ COMMITTED: its next statement sees them), so positions become visible in order.
 * A rolled-back append leaves a gap in revocation_log.seq (readers use > and MAX: harmless) and
 * none in audit_log.idx (MAX + 1 is read under the lock).
 *
 * Every appender waits while the holder has it, so the hold is kept to the server's own work:
 * the issuance path sends the lock, the issuance-log INSERT and the COMMIT as one message
 * (pg-audit-log.ts auditAppendSql, pg-transaction.ts CommitWith), never waiting under the lock
 * for a round trip to a daemon; what remains is the INSERT and the COMMIT's WAL flush.
 *
 * One lock for both logs: every revocation appends to both (its revocation_log row and its
 * "revoked" issuance-log entry), so two locks would always be taken together anyway, and one
 * cannot be taken in two orders. Deadlock freedom: it is the last lock a transaction takes; after
 * it, a transaction only inserts log rows (no row another transaction could hold) and commits.
 * Row locks (the certificates a revocation flips, a superseded predecessor) are taken before it.
 */
export const APPEND_LOCK = "7380385375772766055"; // 0x666c6565746c6f67, "fleetlog"

/** Waits for this transaction's turn to append; held until COMMIT or ROLLBACK. Idempotent within a transaction. */
export async function takeAppendTurn(client: ClientBase): Promise<void> {
  await client.query(`SELECT pg_advisory_xact_lock(${APPEND_LOCK})`);
}
