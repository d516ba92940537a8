import type Database from "better-sqlite3";

import type { CrossCertificateRecord } from "../ports.js";

export type { CrossCertificateRecord };

/** The cross_certificates table (migration v9) and the root's retirement flag. */
export class SqliteCrossCertificates {
  constructor(private readonly db: Database.Database) {}

  add(r: CrossCertificateRecord): void {
    this.db
      .prepare("INSERT INTO cross_certificates (subject_key_id, issuer_key_id, der, not_after, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(r.subjectKeyId, r.issuerKeyId, r.der, r.notAfter.getTime(), r.createdAt.getTime());
  }

  all(): CrossCertificateRecord[] {
    const rows = this.db.prepare("SELECT subject_key_id, issuer_key_id, der, not_after, created_at FROM cross_certificates ORDER BY created_at").all() as Array<{
      subject_key_id: string;
      issuer_key_id: string;
      der: Buffer;
      not_after: number;
      created_at: number;
    }>;
    return rows.map((r) => ({ subjectKeyId: r.subject_key_id, issuerKeyId: r.issuer_key_id, der: r.der, notAfter: new Date(r.not_after), createdAt: new Date(r.created_at) }));
  }

  /** Marks an active root retired: it leaves /roots.pem (with the cross certificates it made). */
  retireRoot(keyId: string): boolean {
    return this.db.prepare("UPDATE issuers SET status = 'retired' WHERE key_id = ? AND role = 'root' AND status = 'active'").run(keyId).changes === 1;
  }
}

/**
 * What /roots.pem serves: every active root, and each cross certificate between two active roots
 * (while both are trusted, hosts pinning either can reach the other; RFC 5280 §6.1 path building).
 */
export function trustBundle(issuers: ReadonlyArray<{ keyId: string; role: string; status: string; der: Uint8Array }>, cross: readonly CrossCertificateRecord[], now: Date): Uint8Array[] {
  const active = issuers.filter((i) => i.role === "root" && i.status === "active");
  const ids = new Set(active.map((r) => r.keyId));
  return [...active.map((r) => r.der), ...cross.filter((c) => ids.has(c.subjectKeyId) && ids.has(c.issuerKeyId) && c.notAfter > now).map((c) => c.der)];
}
