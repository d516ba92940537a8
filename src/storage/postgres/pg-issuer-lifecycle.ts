import type pg from "pg";
import type { CrossCertificateRecord, IssuerChange, IssuerChangeOutcome, IssuerLifecycleStore, IssuerRecord } from "../ports.js";
import { recordOverrideIn } from "./pg-renewal-windows.js";
import { bytea } from "./pg-rows.js";
import { query, storeTransaction } from "./pg-transaction.js";

const ACTIVATE = `UPDATE issuers SET activated_at = GREATEST($1::bigint, (SELECT COALESCE(MAX(activated_at), 0) + 1 FROM issuers))
  WHERE key_id = $2 AND role = 'intermediate' AND status = 'active' AND revoked_at IS NULL`;
const REVOKE = "UPDATE issuers SET revoked_at = $1, revocation_reason = $2 WHERE key_id = $3 AND revoked_at IS NULL";
/**
 * Activations are ordered ("activated last" is the current issuer), and two replicas or commands
 * activating at once would each read the same MAX: the table is locked against other writers
 * (SHARE ROW EXCLUSIVE conflicts with itself and with row writes, not with reads) for these rare,
 * operator-driven changes.
 */
const LOCK_ISSUERS = "LOCK TABLE issuers IN SHARE ROW EXCLUSIVE MODE";

/** One issuers row, inside the caller's transaction (init's hierarchy, a rotation's new root). */
export async function insertIssuerIn(client: pg.ClientBase, r: IssuerRecord): Promise<void> {
  await client.query(
    `INSERT INTO issuers (key_id, role, key_name, parent_key_id, der, not_before, not_after, status, created_at, activated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [r.keyId, r.role, r.keyName, r.parentKeyId, bytea(r.der), r.notBefore.getTime(), r.notAfter.getTime(), r.status, r.createdAt.getTime(), r.activatedAt?.getTime() ?? null],
  );
}

/** IssuerLifecycleStore on PostgreSQL: sqlite-issuer-lifecycle.ts's statements and meaning, asynchronous. */
export class PgIssuerLifecycle implements IssuerLifecycleStore {
  constructor(private readonly pool: pg.Pool) {}

  activateIntermediate(keyId: string, at: Date): Promise<boolean> {
    // Strictly after every earlier activation, even within one millisecond: "activated last"
    // decides the current issuer.
    return storeTransaction(this.pool, async (client) => {
      await client.query(LOCK_ISSUERS);
      const r = await client.query(ACTIVATE, [at.getTime(), keyId]);
      return { result: r.rowCount === 1, commit: true };
    });
  }

  changeIssuers(change: IssuerChange, at: Date): Promise<IssuerChangeOutcome> {
    return storeTransaction(this.pool, async (client): Promise<{ result: IssuerChangeOutcome; commit: boolean }> => {
      await client.query(LOCK_ISSUERS);
      if (change.revoke) {
        const r = await client.query(REVOKE, [at.getTime(), change.revoke.reason, change.revoke.keyId]);
        if (r.rowCount !== 1) return { result: { outcome: "revoke_refused" }, commit: false };
      }
      if (change.activate !== undefined) {
        const r = await client.query(ACTIVATE, [at.getTime(), change.activate]);
        if (r.rowCount !== 1) return { result: { outcome: "activate_refused" }, commit: false };
      }
      const { matched } = await recordOverrideIn(client, change.renewalOverride, change.renewalOverride.createdAt);
      return { result: { outcome: "changed", matched }, commit: true };
    });
  }

  addRootWithCross(root: IssuerRecord, cross: CrossCertificateRecord): Promise<void> {
    return storeTransaction(this.pool, async (client) => {
      await insertIssuerIn(client, root);
      await client.query("INSERT INTO cross_certificates (subject_key_id, issuer_key_id, der, not_after, created_at) VALUES ($1, $2, $3, $4, $5)", [
        cross.subjectKeyId,
        cross.issuerKeyId,
        bytea(cross.der),
        cross.notAfter.getTime(),
        cross.createdAt.getTime(),
      ]);
      return { result: undefined, commit: true };
    });
  }

  async retireRoot(keyId: string): Promise<boolean> {
    const r = await query(this.pool, "UPDATE issuers SET status = 'retired' WHERE key_id = $1 AND role = 'root' AND status = 'active'", [keyId]);
    return r.rowCount === 1;
  }

  async revokeIssuer(keyId: string, at: Date, reason: number): Promise<boolean> {
    // Conditional UPDATE: of two racing revocations, the second re-checks revoked_at IS NULL on the
    // committed row and changes nothing (the first one's time and reason stand).
    const r = await query(this.pool, REVOKE, [at.getTime(), reason, keyId]);
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
