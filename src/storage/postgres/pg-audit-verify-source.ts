import type pg from "pg";
import type { AuditVerifySource } from "../../audit/audit-verifier.js";
import { spkiSha256 } from "../../audit/tree-head.js";
import { PgAuditLog } from "./pg-audit-log.js";

type StoredCertificate = { der: Uint8Array; status: string; issuerKeyId: string };

/**
 * What verifyAuditLog reads, from a PostgreSQL database: the issuance log over PgAuditLog, the
 * trusted audit keys from ca_keys (the PostgreSQL counterpart of the SQLite command's key files),
 * the inventory from certificates. The certificates an entry page names are fetched with the page
 * (one query per page, not one per entry: a log of a few hundred thousand entries stays a few
 * dozen round trips).
 */
export function pgAuditVerifySource(pool: pg.Pool): AuditVerifySource {
  const log = new PgAuditLog(pool);
  let page = new Map<string, StoredCertificate>();
  const fetchCertificates = async (serials: string[]): Promise<Map<string, StoredCertificate>> => {
    const { rows } = await pool.query<StoredCertificate & { serial: string }>(
      `SELECT serial, der, status, issuer_key_id AS "issuerKeyId" FROM certificates WHERE serial = ANY($1)`,
      [serials],
    );
    return new Map(rows.map(({ serial, ...c }) => [serial, c]));
  };
  return {
    async entries(from, limit) {
      const rows = await log.entries(from, limit);
      page = await fetchCertificates([...new Set(rows.flatMap((r) => (r.serial === null ? [] : [r.serial])))]);
      return rows;
    },
    treeHeads: () => log.treeHeads(),
    trustedKeys: () => trustedAuditKeys(pool, log),
    async certificate(serial) {
      return page.get(serial) ?? (await fetchCertificates([serial])).get(serial) ?? null;
    },
    async certificatesSince(sinceMs) {
      const { rows } = await pool.query<{ serial: string }>("SELECT serial FROM certificates WHERE created_at >= $1", [sinceMs]);
      return rows.map((r) => r.serial);
    },
  };
}

/**
 * The audit keys to trust: each audit_keys row whose wrapped key in ca_keys records the same
 * public key, as the SQLite command trusts a row only when its key file agrees.
 */
async function trustedAuditKeys(pool: pg.Pool, log: PgAuditLog): Promise<Map<string, string>> {
  const trusted = new Map<string, string>();
  for (const k of await log.auditKeys()) {
    const { rows } = await pool.query<{ record: string }>("SELECT record FROM ca_keys WHERE name = $1", [k.keyName]);
    if (!rows[0]) continue;
    try {
      const spki = Buffer.from((JSON.parse(rows[0].record) as { publicKeySpki: string }).publicKeySpki, "base64");
      if (spki.equals(k.keySpki)) trusted.set(spkiSha256(spki), k.keyName);
    } catch {
      // An unreadable record vouches for nothing.
    }
  }
  return trusted;
}
