import type pg from "pg";
import type { SerialHex } from "../../core/serial.js";
import type { CertificateStatus, OcspAnswerStore, OcspPresignCandidate, StoredOcspAnswer } from "../ports.js";
import { inTransaction } from "./pg-transaction.js";

interface AnswerRow {
  status: CertificateStatus;
  der: Buffer;
  this_update: number;
  next_update: number;
  refresh_at: number;
}

interface CandidateRow {
  serial: string;
  status: CertificateStatus;
  revoked_at: number | null;
  revocation_reason: number | null;
}

/**
 * The ocsp_answers table (migration v5) on PostgreSQL, SqliteOcspStore's counterpart: every
 * replica serves the same pre-signed bytes.
 */
export class PgOcspStore implements OcspAnswerStore {
  constructor(private readonly pool: pg.Pool) {}

  async getOcspAnswer(issuerKeyId: string, serial: SerialHex): Promise<StoredOcspAnswer | null> {
    const r = await this.pool.query<AnswerRow>(
      "SELECT status, der, this_update, next_update, refresh_at FROM ocsp_answers WHERE issuer_key_id = $1 AND serial = $2",
      [issuerKeyId, serial],
    );
    const row = r.rows[0];
    if (!row) return null;
    return {
      issuerKeyId,
      serial,
      status: row.status,
      der: new Uint8Array(row.der.buffer, row.der.byteOffset, row.der.byteLength),
      thisUpdate: new Date(row.this_update),
      nextUpdate: new Date(row.next_update),
      refreshAt: new Date(row.refresh_at),
    };
  }

  /**
   * One statement over arrays (unnest), in a transaction whose commit does not wait for the WAL
   * flush (SET LOCAL synchronous_commit = off; docs, "Asynchronous Commit"): atomic, and at worst
   * lost in a crash, when the next pre-signing pass signs the answers again. That is the trade
   * SqliteOcspStore makes with synchronous=NORMAL. INSERT OR REPLACE keeps the last of two answers
   * for one certificate in a batch; ON CONFLICT DO UPDATE cannot touch a row twice in a statement,
   * so the batch is reduced to its last answer per certificate first.
   */
  async saveOcspAnswers(answers: StoredOcspAnswer[]): Promise<void> {
    if (answers.length === 0) return;
    const last = new Map<string, StoredOcspAnswer>();
    for (const a of answers) last.set(`${a.issuerKeyId}\u0000${a.serial}`, a);
    const rows = [...last.values()];
    await inTransaction(this.pool, "", async (client) => {
      await client.query("SET LOCAL synchronous_commit = off");
      await client.query(
        `INSERT INTO ocsp_answers (issuer_key_id, serial, status, der, this_update, next_update, refresh_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[])
         ON CONFLICT (issuer_key_id, serial) DO UPDATE SET status = excluded.status, der = excluded.der,
           this_update = excluded.this_update, next_update = excluded.next_update, refresh_at = excluded.refresh_at`,
        [
          rows.map((a) => a.issuerKeyId),
          rows.map((a) => a.serial),
          rows.map((a) => a.status),
          rows.map((a) => Buffer.from(a.der.buffer, a.der.byteOffset, a.der.byteLength)),
          rows.map((a) => a.thisUpdate.getTime()),
          rows.map((a) => a.nextUpdate.getTime()),
          rows.map((a) => a.refreshAt.getTime()),
        ],
      );
    });
  }

  /** The issuer's certificates in primary-key (serial, byte) order from the cursor, as SqliteOcspStore walks them. */
  async certificatesToPresign(issuerKeyId: string, now: Date, afterSerial: string, limit: number): Promise<OcspPresignCandidate[]> {
    const t = now.getTime();
    const r = await this.pool.query<CandidateRow>(
      `SELECT c.serial, c.status, c.revoked_at, c.revocation_reason
       FROM certificates c LEFT JOIN ocsp_answers a ON a.issuer_key_id = c.issuer_key_id AND a.serial = c.serial
       WHERE c.issuer_key_id = $1 AND c.not_after > $2 AND c.serial > $3
         AND (a.serial IS NULL OR a.refresh_at <= $2 OR a.status <> c.status)
       ORDER BY c.serial LIMIT $4`,
      [issuerKeyId, t, afterSerial, limit],
    );
    return r.rows.map((x) => ({
      serial: x.serial as SerialHex,
      status: x.status,
      revokedAt: x.revoked_at === null ? null : new Date(x.revoked_at),
      reason: x.revocation_reason,
    }));
  }

  async deleteExpiredOcspAnswers(now: Date): Promise<number> {
    const r = await this.pool.query("DELETE FROM ocsp_answers WHERE next_update <= $1", [now.getTime()]);
    return r.rowCount ?? 0;
  }
}
