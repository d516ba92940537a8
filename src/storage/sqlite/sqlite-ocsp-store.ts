import type Database from "better-sqlite3";
import type { SerialHex } from "../../core/serial.js";
import type { CertificateStatus, OcspAnswerStore, OcspPresignCandidate, StoredOcspAnswer } from "../ports.js";

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
 * The ocsp_answers table (migration v5) over the SqliteStore's own better-sqlite3 handle, so the
 * big store class stays as it is: the daemon opens one database and hands its handle here.
 *
 * The port is asynchronous (a PostgreSQL store answers over the network); better-sqlite3 is not,
 * so each method does its work at once, inside the call, and returns a settled promise (as
 * sqlite-request-ports.ts does): a save is on the database when the call returns.
 */
export class SqliteOcspStore implements OcspAnswerStore {
  readonly #get: Database.Statement;
  readonly #put: Database.Statement;
  readonly #candidates: Database.Statement;
  readonly #deleteExpired: Database.Statement;
  readonly #saveMany: (answers: StoredOcspAnswer[]) => void;
  readonly #db: Database.Database;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#get = db.prepare("SELECT status, der, this_update, next_update, refresh_at FROM ocsp_answers WHERE issuer_key_id = ? AND serial = ?");
    this.#put = db.prepare(`INSERT OR REPLACE INTO ocsp_answers (issuer_key_id, serial, status, der, this_update, next_update, refresh_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)`);
    // Walks certificates in primary-key (serial) order from the cursor: the unary "+" keeps the
    // planner off certificates_by_issuer, which would re-scan and sort the issuer's whole set for
    // every batch (quadratic: 100,000 certificates took 30 s instead of 0.2 s).
    this.#candidates = db.prepare(`
      SELECT c.serial, c.status, c.revoked_at, c.revocation_reason
      FROM certificates c LEFT JOIN ocsp_answers a ON a.issuer_key_id = c.issuer_key_id AND a.serial = c.serial
      WHERE +c.issuer_key_id = ? AND +c.not_after > ? AND c.serial > ?
        AND (a.serial IS NULL OR a.refresh_at <= ? OR a.status <> c.status)
      ORDER BY c.serial LIMIT ?`);
    this.#deleteExpired = db.prepare("DELETE FROM ocsp_answers WHERE next_update <= ?");
    this.#saveMany = db.transaction((answers: StoredOcspAnswer[]) => {
      for (const a of answers) {
        this.#put.run(a.issuerKeyId, a.serial, a.status, Buffer.from(a.der.buffer, a.der.byteOffset, a.der.byteLength), a.thisUpdate.getTime(), a.nextUpdate.getTime(), a.refreshAt.getTime());
      }
    });
  }

  async getOcspAnswer(issuerKeyId: string, serial: SerialHex): Promise<StoredOcspAnswer | null> {
    const r = this.#get.get(issuerKeyId, serial) as AnswerRow | undefined;
    if (!r) return null;
    return {
      issuerKeyId,
      serial,
      status: r.status,
      der: new Uint8Array(r.der.buffer, r.der.byteOffset, r.der.byteLength),
      thisUpdate: new Date(r.this_update),
      nextUpdate: new Date(r.next_update),
      refreshAt: new Date(r.refresh_at),
    };
  }

  /**
   * Written without waiting for fsync (synchronous=NORMAL for this transaction only; WAL keeps it
   * atomic): a lost answer after a power cut is signed again by the next pass, and an fsync per
   * batch blocked the event loop long enough to push OCSP's p99 past 100 ms during pre-signing.
   * better-sqlite3 is synchronous, so no other transaction can run between the two pragmas.
   */
  async saveOcspAnswers(answers: StoredOcspAnswer[]): Promise<void> {
    if (answers.length === 0) return;
    const before = this.#db.pragma("synchronous", { simple: true }) as number;
    this.#db.pragma("synchronous = NORMAL");
    try {
      this.#saveMany(answers);
    } finally {
      this.#db.pragma(`synchronous = ${before}`);
    }
  }

  async certificatesToPresign(issuerKeyId: string, now: Date, afterSerial: string, limit: number): Promise<OcspPresignCandidate[]> {
    const t = now.getTime();
    return (this.#candidates.all(issuerKeyId, t, afterSerial, t, limit) as CandidateRow[]).map((r) => ({
      serial: r.serial as SerialHex,
      status: r.status,
      revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
      reason: r.revocation_reason,
    }));
  }

  async deleteExpiredOcspAnswers(now: Date): Promise<number> {
    return this.#deleteExpired.run(now.getTime()).changes;
  }
}
