import { randomUUID } from "node:crypto";
import type Database from "better-sqlite3";
import type { CrlLeases, CrlScope, StoredCrl } from "../ports.js";

/** SqliteStore's chunk size (migration v4): the same rows whichever class writes them. */
const CRL_CHUNK_OCTETS = 128 * 1024;

/**
 * CrlLeases on SQLite: the processes sharing one database file (the daemon, a second daemon on
 * the same volume, `fleetca` commands) take a scope's lease as replicas sharing PostgreSQL do.
 * The protocol, and the clock assumption, are PgCrlLeases' (storage/postgres/pg-crl-leases.ts);
 * on one machine the processes share one clock anyway. The statements are the same; a
 * transaction is IMMEDIATE (SQLite's one writer at a time) where PostgreSQL locks a row.
 */
export class SqliteCrlLeases implements CrlLeases {
  readonly #db: Database.Database;
  readonly #acquire: Database.Statement;
  readonly #release: Database.Statement;
  readonly #lease: Database.Statement;
  readonly #insertChunk: Database.Statement;
  readonly #switch: Database.Statement;
  readonly #dropWrite: Database.Statement;
  readonly #sweep: Database.Statement;

  constructor(db: Database.Database) {
    this.#db = db;
    // Free, expired at @now, or already @holder's: one conditional UPSERT (see PgCrlLeases).
    this.#acquire = db.prepare(`
      INSERT INTO crl_leases (issuer_key_id, shard, holder, leased_until) VALUES (@issuer, @shard, @holder, @until)
      ON CONFLICT (issuer_key_id, shard) DO UPDATE SET holder = excluded.holder, leased_until = excluded.leased_until
      WHERE crl_leases.holder = excluded.holder OR crl_leases.leased_until <= @now`);
    this.#release = db.prepare("DELETE FROM crl_leases WHERE issuer_key_id = ? AND shard = ? AND holder = ?");
    this.#lease = db.prepare("SELECT holder, leased_until FROM crl_leases WHERE issuer_key_id = ? AND shard = ?");
    this.#insertChunk = db.prepare("INSERT INTO crl_chunks (issuer_key_id, shard, crl_number, write_id, seq, bytes) VALUES (?, ?, ?, ?, ?, ?)");
    // SqliteStore.saveCrl's switch: only if the number goes up (RFC 5280 §5.2.3).
    this.#switch = db.prepare(
      `INSERT INTO crls (issuer_key_id, shard, crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (issuer_key_id, shard) DO UPDATE SET crl_number = excluded.crl_number, this_update = excluded.this_update,
         next_update = excluded.next_update, entries = excluded.entries, revocation_seq = excluded.revocation_seq,
         write_id = excluded.write_id, der_length = excluded.der_length
       WHERE crls.crl_number < excluded.crl_number`,
    );
    this.#dropWrite = db.prepare("DELETE FROM crl_chunks WHERE issuer_key_id = ? AND shard = ? AND write_id = ?");
    this.#sweep = db.prepare(
      `DELETE FROM crl_chunks WHERE rowid IN (SELECT c.rowid FROM crl_chunks c JOIN crls k ON k.issuer_key_id = c.issuer_key_id AND k.shard = c.shard
         WHERE c.issuer_key_id = ? AND c.shard = ? AND c.crl_number <= k.crl_number AND c.write_id <> k.write_id LIMIT 4)`,
    );
  }

  async acquire(scope: CrlScope, holder: string, until: Date, now: Date): Promise<boolean> {
    return this.#acquire.run({ issuer: scope.issuerKeyId, shard: scope.shard ?? -1, holder, until: until.getTime(), now: now.getTime() }).changes === 1;
  }

  async release(scope: CrlScope, holder: string): Promise<void> {
    this.#release.run(scope.issuerKeyId, scope.shard ?? -1, holder);
  }

  /**
   * SqliteStore.saveCrl's three steps, the switch fenced: the chunks one per transaction with
   * the event loop turning between them; then one IMMEDIATE transaction that reads the lease
   * (no other process can take it before COMMIT) and switches only if it is the holder's,
   * unexpired, and the number goes up; then the sweep, a few rows at a time. A refused write's
   * own chunks go at once.
   */
  async saveCrlAsHolder(s: StoredCrl, holder: string, now: Date): Promise<boolean> {
    const shard = s.shard ?? -1;
    const writeId = randomUUID();
    const der = Buffer.from(s.der.buffer, s.der.byteOffset, s.der.byteLength);
    for (let seq = 0, off = 0; off < der.length || seq === 0; seq++, off += CRL_CHUNK_OCTETS) {
      this.#insertChunk.run(s.issuerKeyId, shard, s.crlNumber, writeId, seq, der.subarray(off, off + CRL_CHUNK_OCTETS));
      if (off + CRL_CHUNK_OCTETS < der.length) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const saved = this.#db
      .transaction((): boolean => {
        const l = this.#lease.get(s.issuerKeyId, shard) as { holder: string; leased_until: number } | undefined;
        if (!l || l.holder !== holder || l.leased_until <= now.getTime()) return false;
        return (
          this.#switch.run(s.issuerKeyId, shard, s.crlNumber, s.thisUpdate.getTime(), s.nextUpdate.getTime(), s.entries, s.revocationSeq, writeId, der.length)
            .changes === 1
        );
      })
      .immediate();
    if (!saved) this.#dropWrite.run(s.issuerKeyId, shard, writeId);
    while (this.#sweep.run(s.issuerKeyId, shard).changes > 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return saved;
  }
}
