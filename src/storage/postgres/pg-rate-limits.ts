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
   */
  async mergeBuckets(buckets: readonly BucketKey[], merge: (b: BucketKey, stored: StoredBucket | null) => StoredBucket | null, now: Date): Promise<void> {
    const ordered = [...buckets].sort(compareKeys);
    await inTransaction(this.pool, "ISOLATION LEVEL READ COMMITTED", async (client) => {
      for (const b of ordered) {
        let stored: StoredBucket | null | undefined;
        while (stored === undefined) {
          const claimed = await client.query(
            "INSERT INTO rate_limit_buckets (limit_name, key, tokens, at, full_at) VALUES ($1, $2, 0, -1, -1) ON CONFLICT (limit_name, key) DO NOTHING",
            [b.limit, b.key],
          );
          if (claimed.rowCount === 1) {
            stored = null;
            break;
          }
          const locked = await client.query<BucketRow>("SELECT tokens, at, full_at FROM rate_limit_buckets WHERE limit_name = $1 AND key = $2 FOR UPDATE", [
            b.limit,
            b.key,
          ]);
          if (locked.rows[0]) stored = bucketOf(locked.rows[0]);
        }
        const next = merge(b, stored);
        if (next) {
          await client.query("UPDATE rate_limit_buckets SET tokens = $3, at = $4, full_at = $5 WHERE limit_name = $1 AND key = $2", [
            b.limit,
            b.key,
            next.tokens,
            next.at.getTime(),
            next.fullAt.getTime(),
          ]);
        } else {
          // A full bucket is no row: the placeholder goes, and so does a row that was stored.
          await client.query("DELETE FROM rate_limit_buckets WHERE limit_name = $1 AND key = $2", [b.limit, b.key]);
        }
      }
      await client.query(
        `DELETE FROM rate_limit_buckets WHERE (limit_name, key) IN
           (SELECT limit_name, key FROM rate_limit_buckets WHERE full_at <= $1 FOR UPDATE SKIP LOCKED)`,
        [now.getTime()],
      );
    });
  }

  async bucketsMergedSince(since: Date): Promise<(BucketKey & { fullAt: Date })[]> {
    const r = await this.pool.query<{ limit_name: string; key: string; full_at: number }>("SELECT limit_name, key, full_at FROM rate_limit_buckets WHERE at >= $1", [
      since.getTime(),
    ]);
    return r.rows.map((x) => ({ limit: x.limit_name, key: x.key, fullAt: new Date(x.full_at) }));
  }
}
