import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { CrlLeases, CrlScope, StoredCrl } from "../ports.js";
import { shardColumn, sweepCrlChunks, switchCrl, writeCrlChunks } from "./pg-crl-store.js";
import { inTransaction } from "./pg-transaction.js";

/**
 * Takes the lease if it is free (no row), expired at $4, or already $3's: one conditional UPSERT.
 * Of two replicas racing for a free scope, the second's INSERT waits on the first's uncommitted
 * row, then meets the conflict and evaluates the WHERE against the row the first committed (docs,
 * INSERT "ON CONFLICT DO UPDATE"): another holder, unexpired, so it gets no row.
 */
const ACQUIRE_SQL = `
INSERT INTO crl_leases (issuer_key_id, shard, holder, leased_until) VALUES ($1, $2, $3, $5)
ON CONFLICT (issuer_key_id, shard) DO UPDATE SET holder = excluded.holder, leased_until = excluded.leased_until
WHERE crl_leases.holder = excluded.holder OR crl_leases.leased_until <= $4`;

/**
 * CrlLeases on PostgreSQL: one CRL writer per scope among the replicas sharing the database.
 *
 * The protocol, per scope, for a replica `holder` (a stable id of the process, e.g. its host and
 * pid and a random suffix):
 * 1. acquire(scope, holder, now + L, now) before building; false: another replica publishes this
 *    scope, skip it. L (the lease time) must cover building, signing and storing the CRL with a
 *    margin; a publisher that works longer re-acquires (extends) before it goes on. The lease is
 *    unrelated to the CRL's own thisUpdate/nextUpdate (publication time, RFC 5280 §5.1.2.4-5): it
 *    names who writes, for a few minutes at most; nextUpdate names how long relying parties may
 *    keep the CRL, usually hours or days.
 * 2. saveCrlAsHolder(crl, holder, now): stored only if the lease is still the holder's and
 *    unexpired, and the CRL's number is above the stored one.
 * 3. release(scope, holder) when done (optional: an expired lease is free anyway).
 *
 * Clocks: lease times are the callers' clocks (`until`, `now`), not the database's, so the SQLite
 * and PostgreSQL adapters mean the same thing and tests can name the time. The assumption is that
 * the replicas' clocks agree within a bound well under L (NTP keeps them within milliseconds).
 * Skew cannot make two CRLs mix or a CRL go backwards: the fence is the row itself, locked in the
 * saving transaction, which names one holder at a time, and the CRL number, which only goes up.
 * What skew can do is cost work: a replica whose clock runs ahead takes over an unexpired lease
 * early, and the previous holder's save is then refused (it built a CRL for nothing); one whose
 * clock runs behind waits longer than L to take over a lease left by a crashed holder.
 */
export class PgCrlLeases implements CrlLeases {
  constructor(private readonly pool: pg.Pool) {}

  async acquire(scope: CrlScope, holder: string, until: Date, now: Date): Promise<boolean> {
    const r = await this.pool.query(ACQUIRE_SQL, [scope.issuerKeyId, shardColumn(scope), holder, now.getTime(), until.getTime()]);
    return r.rowCount === 1;
  }

  async release(scope: CrlScope, holder: string): Promise<void> {
    await this.pool.query("DELETE FROM crl_leases WHERE issuer_key_id = $1 AND shard = $2 AND holder = $3", [scope.issuerKeyId, shardColumn(scope), holder]);
  }

  /**
   * The chunks are written first, outside the transaction (as PgCrlStore.saveCrl does: nothing
   * reads them until the switch); then one transaction locks the lease row (FOR UPDATE: an
   * acquire by another replica waits for this COMMIT, and a takeover that committed first is
   * seen), checks the holder and expiry, and switches crls only if the number goes up. A refused
   * write's chunks are deleted at once (they may be numbered above the stored CRL, which the
   * sweep would keep as a write still under way).
   */
  async saveCrlAsHolder(s: StoredCrl, holder: string, now: Date): Promise<boolean> {
    const writeId = randomUUID();
    await writeCrlChunks(this.pool, s, writeId);
    let saved = false;
    try {
      saved = await inTransaction(this.pool, "ISOLATION LEVEL READ COMMITTED", async (client) => {
        const lease = await client.query<{ holder: string; leased_until: number }>(
          "SELECT holder, leased_until FROM crl_leases WHERE issuer_key_id = $1 AND shard = $2 FOR UPDATE",
          [s.issuerKeyId, shardColumn(s)],
        );
        const l = lease.rows[0];
        if (!l || l.holder !== holder || l.leased_until <= now.getTime()) return false;
        return switchCrl(client, s, writeId);
      });
    } finally {
      if (!saved) {
        await this.pool.query("DELETE FROM crl_chunks WHERE issuer_key_id = $1 AND shard = $2 AND write_id = $3", [s.issuerKeyId, shardColumn(s), writeId]);
      }
    }
    await sweepCrlChunks(this.pool, s);
    return saved;
  }
}
