import { randomBytes } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";

/**
 * Fills a stopped daemon's inventory with `count` synthetic, unexpired certificate rows of the
 * current intermediate (schema: src/storage/migrations.ts). Synthetic because issuing
 * 1M certificates through the API would take longer than the whole benchmark; the `der` column
 * reuses one real certificate's bytes (CRL and OCSP read serial/status/dates, not the DER).
 * One transaction, synchronous=OFF: seeding is set-up, not what is measured.
 */
export function seedCertificates(dataDir, { count, revoked }) {
  const db = new Database(join(dataDir, "fleetca.db"));
  try {
    db.pragma("synchronous = OFF");
    const issuer = db.prepare("SELECT key_id FROM issuers WHERE role = 'intermediate' AND status = 'active' ORDER BY not_before DESC LIMIT 1").get();
    if (!issuer) throw new Error("no active intermediate in the issuers table");
    const sample = db.prepare("SELECT der FROM certificates WHERE issuer_key_id = ? LIMIT 1").get(issuer.key_id);
    if (!sample) throw new Error("no certificate to borrow a DER from");
    const now = Date.now();
    const notAfter = now + 7 * 86_400_000;
    // Distinct lower-case hex serials, 16 bytes, leading nibble 5 (positive, no leading zero, as
    // openssl prints them); a random per-run prefix keeps them apart from real serials.
    const prefix = "5" + randomBytes(4).toString("hex").slice(0, 7);
    const insert = db.prepare(
      `INSERT INTO certificates (serial, issuer_key_id, sans, subject_cn, not_before, not_after, der, provisioner, token_id, status, revoked_at, revocation_reason, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'bootstrap', NULL, ?, ?, ?, ?)`,
    );
    db.transaction(() => {
      for (let i = 0; i < count; i++) {
        const serial = prefix + i.toString(16).padStart(24, "0");
        const name = `seed-${i}.internal`;
        // A mix of reasons: none (unspecified, no reasonCode entry extension), keyCompromise, superseded.
        const reason = revoked ? [null, 1, 4][i % 3] : null;
        insert.run(serial, issuer.key_id, `{"dns":["${name}"],"ip":[],"uri":[]}`, name, now - 3_600_000, notAfter, sample.der,
          revoked ? "revoked" : "valid", revoked ? now - 60_000 - (i % 86_400) * 1000 : null, reason, now - 3_600_000);
      }
    })();
    return { issuerKeyId: issuer.key_id, count };
  } finally {
    db.close();
  }
}
