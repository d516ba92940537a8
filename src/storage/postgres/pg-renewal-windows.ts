import type pg from "pg";
import type { SerialHex } from "../../core/serial.js";
import type { CertificateStatus, RenewalInfoLookup, RenewalSelectorKind, RenewalSubject, RenewalWindowOverride, RenewalWindowStore } from "../ports.js";
import { inTransaction } from "./pg-transaction.js";

interface SubjectRow {
  serial: string;
  issuer_key_id: string;
  provisioner: string;
  not_before: number;
  not_after: number;
  status: CertificateStatus;
  created_at: number;
  kind: RenewalSelectorKind | null;
  value: string | null;
  window_start: number | null;
  window_end: number | null;
  o_created_at: number | null;
}

/**
 * The certificate by primary key and, in the same statement (so from one snapshot, as
 * SqliteRenewalWindows reads both in one transaction), the override naming it that ends first
 * among those recorded after it was issued: one arm per selector kind, each a search of
 * renewal_windows_by_selector (kind, value, created_at), as RENEWAL_OVERRIDE_SQL does.
 */
const SUBJECT_SQL = `
SELECT c.serial, c.issuer_key_id, c.provisioner, c.not_before, c.not_after, c.status, c.created_at,
       o.kind, o.value, o.window_start, o.window_end, o.created_at AS o_created_at
FROM certificates c
LEFT JOIN LATERAL (
  SELECT kind, value, window_start, window_end, created_at FROM (
    SELECT kind, value, window_start, window_end, created_at FROM renewal_windows WHERE kind = 'issuer' AND value = c.issuer_key_id AND created_at > c.created_at
    UNION ALL
    SELECT kind, value, window_start, window_end, created_at FROM renewal_windows WHERE kind = 'provisioner' AND value = c.provisioner AND created_at > c.created_at
    UNION ALL
    SELECT kind, value, window_start, window_end, created_at FROM renewal_windows WHERE kind = 'serial' AND value = c.serial AND created_at > c.created_at
  ) arms ORDER BY window_end, created_at LIMIT 1
) o ON true
WHERE c.serial = $1`;

/** How many certificates a selector names that are live at $2 (SqliteRenewalWindows' LIVE_COUNT_SQL). */
const LIVE_COUNT_SQL: Record<RenewalSelectorKind, string> = {
  issuer: "SELECT count(*)::int AS n FROM certificates WHERE issuer_key_id = $1 AND status = 'valid' AND not_after > $2 AND not_before <= $2",
  provisioner: "SELECT count(*)::int AS n FROM certificates WHERE provisioner = $1 AND status = 'valid' AND not_after > $2 AND not_before <= $2",
  serial: "SELECT count(*)::int AS n FROM certificates WHERE serial = $1 AND status = 'valid' AND not_after > $2 AND not_before <= $2",
};

/** The renewal_windows table (migration v7) on PostgreSQL: RenewalWindowStore and RenewalInfoLookup. */
export class PgRenewalWindows implements RenewalWindowStore, RenewalInfoLookup {
  constructor(private readonly pool: pg.Pool) {}

  async renewalSubject(serial: SerialHex): Promise<RenewalSubject | null> {
    const r = await this.pool.query<SubjectRow>(SUBJECT_SQL, [serial]);
    const c = r.rows[0];
    if (!c) return null;
    return {
      serial: c.serial as SerialHex,
      issuerKeyId: c.issuer_key_id,
      provisioner: c.provisioner,
      notBefore: new Date(c.not_before),
      notAfter: new Date(c.not_after),
      status: c.status,
      createdAt: new Date(c.created_at),
      override:
        c.kind !== null
          ? { kind: c.kind, value: c.value!, start: new Date(c.window_start!), end: new Date(c.window_end!), createdAt: new Date(c.o_created_at!) }
          : null,
    };
  }

  /** The insert and the count in one transaction, as SQLite's IMMEDIATE one. */
  async recordRenewalOverride(o: RenewalWindowOverride, now: Date): Promise<{ matched: number }> {
    return inTransaction(this.pool, "", (client) => recordOverrideIn(client, o, now));
  }
}

/**
 * Stores the override and counts the live certificates it names, inside the caller's transaction
 * (the issuer changes of pg-issuer-lifecycle.ts commit it with the change it belongs to).
 */
export async function recordOverrideIn(client: pg.ClientBase, o: RenewalWindowOverride, now: Date): Promise<{ matched: number }> {
  await client.query("INSERT INTO renewal_windows (kind, value, window_start, window_end, created_at) VALUES ($1, $2, $3, $4, $5)", [
    o.kind,
    o.value,
    o.start.getTime(),
    o.end.getTime(),
    o.createdAt.getTime(),
  ]);
  const r = await client.query<{ n: number }>(LIVE_COUNT_SQL[o.kind], [o.value, now.getTime()]);
  return { matched: r.rows[0]!.n };
}
