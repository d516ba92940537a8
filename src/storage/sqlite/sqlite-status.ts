import type Database from "better-sqlite3";

import type { CertificateCounts, CrlSummary, InventorySummary } from "../ports.js";

export type { CertificateCounts, CrlSummary };

/**
 * What `fleetca status` reads from the database: counts by state, and each published CRL's
 * number and nextUpdate. Internal certificates (the API's serving certificate) are counted
 * apart from the fleet's: they are the CA's own.
 */
export function inventorySummary(db: Database.Database, now: Date, internalProvisioners: readonly string[]): InventorySummary {
  const t = now.getTime();
  const counts = (internal: boolean): CertificateCounts => {
    const marks = internalProvisioners.map(() => "?").join(", ") || "''";
    const r = db
      .prepare(
        `SELECT
           COALESCE(SUM(status = 'valid' AND not_after >= @t), 0) AS valid,
           COALESCE(SUM(status = 'valid' AND not_after >= @t AND not_after < @t + 86400000), 0) AS expiringWithin24h,
           COALESCE(SUM(status = 'revoked'), 0) AS revoked,
           COALESCE(SUM(status = 'valid' AND not_after < @t), 0) AS expired
         FROM certificates WHERE provisioner ${internal ? "IN" : "NOT IN"} (${marks})`,
      )
      .get(...internalProvisioners, { t }) as CertificateCounts;
    return r;
  };
  const crls = (
    db.prepare("SELECT issuer_key_id AS issuerKeyId, shard, crl_number AS crlNumber, this_update AS thisUpdate, next_update AS nextUpdate, entries FROM crls ORDER BY issuer_key_id, shard").all() as Array<{
      issuerKeyId: string;
      shard: number;
      crlNumber: number;
      thisUpdate: number;
      nextUpdate: number;
      entries: number;
    }>
  ).map((c) => ({ ...c, shard: c.shard < 0 ? null : c.shard, thisUpdate: new Date(c.thisUpdate), nextUpdate: new Date(c.nextUpdate) }));
  return { fleet: counts(false), internal: counts(true), crls };
}
