import type Database from "better-sqlite3";
import type { BucketKey, RateLimitStore, StoredBucket } from "../ports.js";

/**
 * The rate-limit buckets in the shared SQLite file (migration v12). Reads are by primary key
 * (one per bucket a process has not seen since its last merge); writes are one IMMEDIATE
 * transaction per merge, about once a second per process, never one per request.
 *
 * The port is asynchronous (PostgreSQL, issue 17); better-sqlite3 is not, so each method does its
 * work at once, inside the call, and returns a settled promise. A merge's transaction therefore
 * runs whole within the call, the `merge` callback included, with nothing else in between.
 */
export class SqliteRateLimits implements RateLimitStore {
  readonly #read;
  readonly #write;
  readonly #prune;
  readonly #delete;
  readonly #mergedSince;

  constructor(private readonly db: Database.Database) {
    this.#read = db.prepare("SELECT tokens, at, full_at FROM rate_limit_buckets WHERE limit_name = ? AND key = ?").raw();
    this.#write = db.prepare(
      `INSERT INTO rate_limit_buckets (limit_name, key, tokens, at, full_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (limit_name, key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at, full_at = excluded.full_at`,
    );
    this.#prune = db.prepare("DELETE FROM rate_limit_buckets WHERE full_at <= ?");
    this.#delete = db.prepare("DELETE FROM rate_limit_buckets WHERE limit_name = ? AND key = ?");
    this.#mergedSince = db.prepare("SELECT limit_name, key, full_at FROM rate_limit_buckets WHERE at >= ?").raw();
  }

  async readBucket(b: BucketKey): Promise<StoredBucket | null> {
    return this.#readNow(b);
  }

  #readNow(b: BucketKey): StoredBucket | null {
    const r = this.#read.get(b.limit, b.key) as [number, number, number] | undefined;
    return r ? { tokens: r[0], at: new Date(r[1]), fullAt: new Date(r[2]) } : null;
  }

  async mergeBuckets(
    buckets: readonly BucketKey[],
    merge: (b: BucketKey, stored: StoredBucket | null) => StoredBucket | null,
    now: Date,
  ): Promise<void> {
    this.db
      .transaction(() => {
        // Read inside the write transaction: another process's merge cannot slip in between.
        for (const b of buckets) {
          const stored = this.#readNow(b);
          const next = merge(b, stored);
          // Most buckets are full again by their merge (one issuance for a subject that may have
          // a hundred): no row to write, and none to delete unless one was there.
          if (next) this.#write.run(b.limit, b.key, next.tokens, next.at.getTime(), next.fullAt.getTime());
          else if (stored) this.#delete.run(b.limit, b.key);
        }
        this.#prune.run(now.getTime());
      })
      .immediate();
  }

  async bucketsMergedSince(since: Date): Promise<(BucketKey & { fullAt: Date })[]> {
    const rows = this.#mergedSince.all(since.getTime()) as [string, string, number][];
    return rows.map(([limit, key, fullAt]) => ({ limit, key, fullAt: new Date(fullAt) }));
  }
}
