import type pg from "pg";
import type { IssuerLifecycleStore } from "../ports.js";
import { query, storeTransaction } from "./pg-transaction.js";

/** IssuerLifecycleStore on PostgreSQL: sqlite-issuer-lifecycle.ts's statements and meaning, asynchronous. */
export class PgIssuerLifecycle implements IssuerLifecycleStore {
  constructor(private readonly pool: pg.Pool) {}

  activateIntermediate(keyId: string, at: Date): Promise<boolean> {
    // Strictly after every earlier activation, even within one millisecond: "activated last"
    // decides the current issuer. Two replicas activating at once would each read the same MAX,
    // so the table is locked against other writers (SHARE ROW EXCLUSIVE conflicts with itself and
    // with row writes, not with reads) for this rare, operator-driven change.
    return storeTransaction(this.pool, async (client) => {
      await client.query("LOCK TABLE issuers IN SHARE ROW EXCLUSIVE MODE");
      const r = await client.query(
        `UPDATE issuers SET activated_at = GREATEST($1::bigint, (SELECT COALESCE(MAX(activated_at), 0) + 1 FROM issuers))
         WHERE key_id = $2 AND role = 'intermediate' AND status = 'active' AND revoked_at IS NULL`,
        [at.getTime(), keyId],
      );
      return { result: r.rowCount === 1, commit: true };
    });
  }

  async revokeIssuer(keyId: string, at: Date, reason: number): Promise<boolean> {
    // Conditional UPDATE: of two racing revocations, the second re-checks revoked_at IS NULL on the
    // committed row and changes nothing (the first one's time and reason stand).
    const r = await query(this.pool, "UPDATE issuers SET revoked_at = $1, revocation_reason = $2 WHERE key_id = $3 AND revoked_at IS NULL", [
      at.getTime(),
      reason,
      keyId,
    ]);
    return r.rowCount === 1;
  }

  async lastCertificateExpiry(issuerKeyId: string): Promise<Date | null> {
    // certificates_by_issuer (issuer_key_id, status, not_after): one index seek per status, as SQLite's.
    const { rows } = await query<{ m: number | null }>(
      this.pool,
      `SELECT GREATEST((SELECT MAX(not_after) FROM certificates WHERE issuer_key_id = $1 AND status = 'valid'),
                       (SELECT MAX(not_after) FROM certificates WHERE issuer_key_id = $1 AND status = 'revoked')) AS m`,
      [issuerKeyId],
    );
    const ms = rows[0]!.m;
    return ms === null ? null : new Date(ms);
  }

  async countLiveCertificates(issuerKeyId: string, now: Date): Promise<number> {
    const { rows } = await query<{ n: number }>(this.pool, "SELECT COUNT(*) AS n FROM certificates WHERE issuer_key_id = $1 AND status = 'valid' AND not_after > $2", [
      issuerKeyId,
      now.getTime(),
    ]);
    return rows[0]!.n;
  }
}
