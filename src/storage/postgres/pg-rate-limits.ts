import type pg from "pg";
import type { BucketKey, RateLimitStore, StoredBucket } from "../ports.js";
import { inTransaction } from "./pg-transaction.js";

type BucketRow = { tokens: number; at: number; full_at: number };

function bucketOf(r: BucketRow): StoredBucket {
  return { tokens: r.tokens, at: new Date(r.at), fullAt: new Date(r.full_at) };
}

/** Byte order of (limit, key): the order every merge locks its rows in (see mergeBuckets). */
function compareKeys(a: BucketKey, b: BucketKey): number {
  return Buffer.compare(Buffer.from(a.limit), Buffer.from(b.limit)) || Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));
}

/** Rolls a merge's transaction back so that it starts over (see mergeBuckets); never leaves it. */
class RowVanished extends Error {}

/** A bucket's identity as a Map key. */
const idOf = (limit: string, key: string): string => JSON.stringify([limit, key]);

/**
 * The rate-limit buckets (migration v12) on PostgreSQL, shared by every replica. SQLite makes a
 * merge safe by running it in an IMMEDIATE transaction (one writer at a time); PostgreSQL runs
 * merges of several replicas at once, so each merge locks the rows it reads instead.
 */
export class PgRateLimits implements RateLimitStore {
  constructor(private readonly pool: pg.Pool) {}

  async readBucket(b: BucketKey): Promise<StoredBucket | null> {
    const r = await this.pool.query<BucketRow>("SELECT tokens, at, full_at FROM rate_limit_buckets WHERE limit_name = $1 AND key = $2", [b.limit, b.key]);
    return r.rows[0] ? bucketOf(r.rows[0]) : null;
  }

  /**
   * One READ COMMITTED transaction. Each bucket is read with its row locked until COMMIT, so a
   * concurrent merge of the same bucket by another replica waits and then reads what this one
   * wrote, and no update is lost:
   * - a stored row: SELECT … FOR UPDATE;
   * - no row: nothing to lock, and two merges would both read "full" and the second write would
   *   erase the first's. So a missing row is claimed by inserting a placeholder, INSERT … ON
   *   CONFLICT DO NOTHING: of two replicas inserting one key, the second waits on the first's
   *   uncommitted row (the unique index) and then finds a conflict, and goes on to lock the row
   *   the first committed. The placeholder is this transaction's own, never seen by others: it is
   *   replaced by what `merge` returns, or deleted when that is null, before COMMIT.
   * A row deleted between the failed insert and the lock (another merge found it full) is tried
   * again. `merge` is called exactly once per bucket, on the stored value as locked.
   * The buckets are locked in one order (byte order of limit, key) whatever order the caller
   * gives, so two merges of overlapping sets cannot deadlock; the prune of full rows skips rows
   * another merge has locked (FOR UPDATE SKIP LOCKED) for the same reason: they go next time.
   *
   * Every step covers all the buckets at once (array parameters), so a merge is a constant number
   * of round trips whatever the number of buckets: BEGIN, the claim (one INSERT), the lock of the
   * rest (one SELECT), one UPDATE, one DELETE, the prune, COMMIT; a step with nothing to do is not
   * sent. Once a second under sign load a merge holds a few hundred buckets (a new subject each),
   * which one statement per bucket made as many round trips.
   *
   * Why the batched steps still lock in one order, so cannot deadlock (a wait-for cycle needs
   * each of its merges to hold a key another one of them is waiting for):
   * - the INSERT inserts its rows in the order of its SELECT (ORDER BY ordinality, the arrays
   *   sorted by compareKeys), and a row's ON CONFLICT check, with its wait for a transaction that
   *   inserted, updated or deleted that key and has not committed, is made as that row is
   *   inserted (speculative insertion, one row after the other). DO NOTHING takes no lock on the
   *   row it conflicts with, and does not wait for a row only locked FOR UPDATE (seen on
   *   PostgreSQL 15; were it to wait, that merge would still hold no row lock a SELECT waits on);
   * - the SELECT … ORDER BY … FOR UPDATE locks its rows after the sort, in its order (docs,
   *   SELECT, "The Locking Clause": ORDER BY is applied before the lock), the same byte order
   *   (COLLATE "C", as compareKeys compares UTF-8 bytes);
   * - a merge waiting in its INSERT holds only placeholders of keys before the one it waits on; a
   *   merge waiting in its SELECT holds its placeholders, which no SELECT waits for (an uncommitted
   *   insert is invisible to it; only another INSERT waits for it), and row locks of keys before
   *   the one it waits on. So a cycle would be all INSERTs or all SELECTs, each taking its keys in
   *   the one order: none. The UPDATE, the DELETE and the prune wait for nothing (rows this merge
   *   holds; SKIP LOCKED).
   * A row found neither inserted nor locked (deleted by another merge between this one's INSERT
   * and SELECT) breaks that argument if it were claimed in the same transaction: this merge then
   * holds locks on later keys while it waits for the earlier one, which a third merge may have
   * claimed meanwhile and be waiting on those later keys. So the transaction is rolled back,
   * releasing everything, and the merge starts over: `merge` has not been called yet (it is
   * called once every bucket is held), and this happens only when a row vanishes under a race.
   */
  async mergeBuckets(buckets: readonly BucketKey[], merge: (b: BucketKey, stored: StoredBucket | null) => StoredBucket | null, now: Date): Promise<void> {
    // Each key once, in lock order. A key given twice is merged twice, the second time on what
    // the first returned, as it would be read back after the first was written.
    const byKey = new Map<string, { id: string; b: BucketKey; times: number }>();
    for (const b of buckets) {
      const id = idOf(b.limit, b.key);
      const e = byKey.get(id);
      if (e) e.times++;
      else byKey.set(id, { id, b, times: 1 });
    }
    const ordered = [...byKey.values()].sort((x, y) => compareKeys(x.b, y.b));
    const limits = ordered.map((e) => e.b.limit);
    const keys = ordered.map((e) => e.b.key);
    for (;;) {
      try {
        await inTransaction(this.pool, "ISOLATION LEVEL READ COMMITTED", async (client) => {
          const stored = new Map<string, StoredBucket | null>();
          if (ordered.length > 0) {
            const claimed = await client.query<{ limit_name: string; key: string }>(
              `INSERT INTO rate_limit_buckets (limit_name, key, tokens, at, full_at)
                 SELECT l, k, 0, -1, -1 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(l, k, n) ORDER BY n
               ON CONFLICT (limit_name, key) DO NOTHING
               RETURNING limit_name, key`,
              [limits, keys],
            );
            for (const r of claimed.rows) stored.set(idOf(r.limit_name, r.key), null);
          }
          const rest = ordered.filter((e) => !stored.has(e.id));
          if (rest.length > 0) {
            const locked = await client.query<BucketRow & { limit_name: string; key: string }>(
              `SELECT b.limit_name, b.key, b.tokens, b.at, b.full_at
                 FROM rate_limit_buckets b JOIN unnest($1::text[], $2::text[]) AS u(l, k) ON b.limit_name = u.l AND b.key = u.k
                 ORDER BY b.limit_name COLLATE "C", b.key COLLATE "C"
                 FOR UPDATE OF b`,
              [rest.map((e) => e.b.limit), rest.map((e) => e.b.key)],
            );
            for (const r of locked.rows) stored.set(idOf(r.limit_name, r.key), bucketOf(r));
            if (stored.size < ordered.length) throw new RowVanished();
          }
          const updated: { b: BucketKey; next: StoredBucket }[] = [];
          const deleted: BucketKey[] = [];
          for (const { id, b, times } of ordered) {
            let value: StoredBucket | null = stored.get(id)!;
            for (let i = 0; i < times; i++) value = merge(b, value);
            if (value) updated.push({ b, next: value });
            // A full bucket is no row: the placeholder goes, and so does a row that was stored.
            else deleted.push(b);
          }
          if (updated.length > 0) {
            await client.query(
              `UPDATE rate_limit_buckets b SET tokens = u.t, at = u.a, full_at = u.f
                 FROM unnest($1::text[], $2::text[], $3::double precision[], $4::bigint[], $5::bigint[]) AS u(l, k, t, a, f)
                 WHERE b.limit_name = u.l AND b.key = u.k`,
              [
                updated.map((x) => x.b.limit),
                updated.map((x) => x.b.key),
                updated.map((x) => x.next.tokens),
                updated.map((x) => x.next.at.getTime()),
                updated.map((x) => x.next.fullAt.getTime()),
              ],
            );
          }
          if (deleted.length > 0) {
            await client.query(
              `DELETE FROM rate_limit_buckets b USING unnest($1::text[], $2::text[]) AS u(l, k) WHERE b.limit_name = u.l AND b.key = u.k`,
              [deleted.map((b) => b.limit), deleted.map((b) => b.key)],
            );
          }
          await client.query(
            `DELETE FROM rate_limit_buckets WHERE (limit_name, key) IN
               (SELECT limit_name, key FROM rate_limit_buckets WHERE full_at <= $1 FOR UPDATE SKIP LOCKED)`,
            [now.getTime()],
          );
        });
        return;
      } catch (e) {
        if (!(e instanceof RowVanished)) throw e;
      }
    }
  }

  async bucketsMergedSince(since: Date): Promise<(BucketKey & { fullAt: Date })[]> {
    const r = await this.pool.query<{ limit_name: string; key: string; full_at: number }>("SELECT limit_name, key, full_at FROM rate_limit_buckets WHERE at >= $1", [
      since.getTime(),
    ]);
    return r.rows.map((x) => ({ limit: x.limit_name, key: x.key, fullAt: new Date(x.full_at) }));
  }
}
