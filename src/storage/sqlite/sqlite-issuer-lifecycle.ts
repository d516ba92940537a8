import type Database from "better-sqlite3";

/**
 * What IssuerLifecycleStore (ports.ts) says, synchronously, on the CA's SQLite file. Its own
 * statements on the shared connection, as sqlite-renewal-windows.ts, so the rotation commands and
 * the daemon's issuer poll need nothing of the issuance path's store. The read queries work on a
 * read-only connection (public workers). Synchronous because the rotation commands run it inside
 * one better-sqlite3 transaction with the renewal-window pull; the daemon reaches it through the
 * asynchronous port (sqlite-inventory-ports.ts).
 */
export class SqliteIssuerLifecycle {
  readonly #stmts: Map<string, Database.Statement> = new Map();

  constructor(private readonly db: Database.Database) {}

  activateIntermediate(keyId: string, at: Date): boolean {
    // Strictly after every earlier activation, even within one millisecond (or a frozen clock):
    // "activated last" decides the current issuer, and a tie would leave the old one current.
    return (
      this.#stmt(
        "activate",
        `UPDATE issuers SET activated_at = MAX(?, (SELECT COALESCE(MAX(activated_at), 0) + 1 FROM issuers))
         WHERE key_id = ? AND role = 'intermediate' AND status = 'active' AND revoked_at IS NULL`,
      ).run(at.getTime(), keyId).changes === 1
    );
  }

  revokeIssuer(keyId: string, at: Date, reason: number): boolean {
    return (
      this.#stmt("revoke", "UPDATE issuers SET revoked_at = ?, revocation_reason = ? WHERE key_id = ? AND revoked_at IS NULL").run(at.getTime(), reason, keyId)
        .changes === 1
    );
  }

  lastCertificateExpiry(issuerKeyId: string): Date | null {
    // certificates_by_issuer (issuer_key_id, status, not_after): two index seeks, one per status
    // (asked every second by the daemon: a MAX per status is one seek each, where a MAX over both
    // would scan every row of the issuer in the index).
    const ms = this.#stmt(
      "lastExpiry",
      `SELECT MAX(m) FROM (SELECT MAX(not_after) AS m FROM certificates WHERE issuer_key_id = ? AND status = 'valid'
         UNION ALL SELECT MAX(not_after) FROM certificates WHERE issuer_key_id = ? AND status = 'revoked')`,
    )
      .pluck()
      .get(issuerKeyId, issuerKeyId) as number | null;
    return ms === null ? null : new Date(ms);
  }

  countLiveCertificates(issuerKeyId: string, now: Date): number {
    return this.#stmt("countLive", "SELECT COUNT(*) FROM certificates WHERE issuer_key_id = ? AND status = 'valid' AND not_after > ?")
      .pluck()
      .get(issuerKeyId, now.getTime()) as number;
  }

  #stmt(name: string, sql: string): Database.Statement {
    let s = this.#stmts.get(name);
    if (!s) {
      s = this.db.prepare(sql);
      this.#stmts.set(name, s);
    }
    return s;
  }
}
