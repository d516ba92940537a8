import type pg from "pg";
import type { CertificateCounts, InventorySummary } from "../ports.js";
import { query } from "./pg-transaction.js";

const DAY_MS = 86_400_000;

/**
 * What `fleetca status` reads, on PostgreSQL: sqlite-status.ts's counts and CRL list, one
 * statement for both counts (FILTER per state, the fleet and the CA's own certificates apart).
 */
export async function pgInventorySummary(pool: pg.Pool, now: Date, internalProvisioners: readonly string[]): Promise<InventorySummary> {
  const t = now.getTime();
  const { rows } = await query<CertificateCounts & { internal: boolean }>(
    pool,
    `SELECT provisioner = ANY($2::text[]) AS internal,
            count(*) FILTER (WHERE status = 'valid' AND not_after >= $1)::int AS valid,
            count(*) FILTER (WHERE status = 'valid' AND not_after >= $1 AND not_after < $1 + ${DAY_MS})::int AS "expiringWithin24h",
            count(*) FILTER (WHERE status = 'revoked')::int AS revoked,
            count(*) FILTER (WHERE status = 'valid' AND not_after < $1)::int AS expired
     FROM certificates GROUP BY 1`,
    [t, [...internalProvisioners]],
  );
  const none: CertificateCounts = { valid: 0, expiringWithin24h: 0, revoked: 0, expired: 0 };
  const countsOf = (internal: boolean): CertificateCounts => {
    const r = rows.find((row) => row.internal === internal);
    return r ? { valid: r.valid, expiringWithin24h: r.expiringWithin24h, revoked: r.revoked, expired: r.expired } : none;
  };
  const crls = await query<{ issuer_key_id: string; shard: number; crl_number: number; this_update: number; next_update: number; entries: number }>(
    pool,
    "SELECT issuer_key_id, shard, crl_number, this_update, next_update, entries FROM crls ORDER BY issuer_key_id, shard",
  );
  return {
    fleet: countsOf(false),
    internal: countsOf(true),
    crls: crls.rows.map((c) => ({
      issuerKeyId: c.issuer_key_id,
      shard: c.shard < 0 ? null : c.shard,
      crlNumber: c.crl_number,
      thisUpdate: new Date(c.this_update),
      nextUpdate: new Date(c.next_update),
      entries: c.entries,
    })),
  };
}
