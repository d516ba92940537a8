import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { AuditVerifySource } from "../../audit/audit-verifier.js";
import { spkiSha256 } from "../../audit/tree-head.js";
import type { SerialHex } from "../../core/serial.js";
import type { SqliteStore } from "./sqlite-store.js";

/**
 * What verifyAuditLog reads from a SQLite data dir: the issuance log and inventory in its
 * database, and the audit keys its key files vouch for (pg-audit-verify-source.ts is the
 * PostgreSQL form).
 */
export function sqliteAuditVerifySource(store: SqliteStore, keysDir: string): AuditVerifySource {
  return {
    entries: (from, limit) => store.audit.entries(from, limit),
    treeHeads: () => store.audit.treeHeads(),
    trustedKeys: () => trustedAuditKeys(store, keysDir),
    certificate: (serial) => {
      const c = store.getCertificate(serial as SerialHex);
      return c ? { der: c.der, status: c.status, issuerKeyId: c.issuerKeyId } : null;
    },
    certificatesSince: (sinceMs) => store.db.prepare("SELECT serial FROM certificates WHERE created_at >= ?").pluck().iterate(sinceMs) as Iterable<string>,
  };
}

/**
 * The audit keys to trust: each audit_keys row whose wrapped key file (keys/<name>.key.json)
 * records the same public key. A head signed by any other key fails, whatever the table says.
 */
function trustedAuditKeys(store: SqliteStore, keysDir: string): Map<string, string> {
  const trusted = new Map<string, string>();
  for (const k of store.audit.auditKeys()) {
    const file = join(keysDir, `${k.keyName}.key.json`);
    if (!existsSync(file)) continue;
    try {
      const spki = Buffer.from((JSON.parse(readFileSync(file, "utf8")) as { publicKeySpki: string }).publicKeySpki, "base64");
      if (spki.equals(k.keySpki)) trusted.set(spkiSha256(spki), k.keyName);
    } catch {
      // An unreadable key file vouches for nothing.
    }
  }
  return trusted;
}
