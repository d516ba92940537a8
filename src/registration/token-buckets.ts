import type { Clock } from "../core/clock.js";
import type { BucketKey, RateLimitStore, StoredBucket } from "../storage/ports.js";

/** A token bucket's shape: `burst` tokens at most, refilled at `perSecond`. */
export interface BucketRule {
  perSecond: number;
  burst: number;
}

/** A bucket as this process holds it. */
interface Held {
  /** heldKey(bucket), made once. */
  id: string;
  bucket: BucketKey;
  rule: BucketRule;
  tokens: number;
  /** Unix ms `tokens` was counted at. */
  at: number;
  /** Tokens taken here since the last merge, net of those given back: what the merge subtracts. */
  taken: number;
}

/** Seconds until a bucket refused by takeAll holds a token again, and which bucket it was. */
export interface Refusal {
  bucket: BucketKey;
  retryAfterSeconds: number;
}

/**
 * Merges look this far back for rows other processes merged: a row carries the time its merge
 * began, which may commit up to the store's busy timeout (5 s) later; replicas' clocks (issue 17)
 * may differ a little too. Reading a row twice costs nothing; missing one lets its key overshoot.
 */
const MERGED_SINCE_MARGIN_MS = 5_000;

/**
 * Token buckets shared through the database by every process that limits the same things, at a
 * per-request cost of a few Map lookups: a bucket is read from the database only the first time
 * a process meets it after a merge, and only when a stored row exists for it (which the process
 * learns at each merge), so a new subject or address costs no SQLite call at all.
 *
 * Each process takes from its own copy of a bucket and remembers how much it took; `merge()`,
 * about once a second, subtracts that from the stored bucket in one write transaction (no
 * fsynced write per request on the event loop, which would cost more than a signature), adopts
 * the result, and forgets the buckets it did not touch since the last merge, so that the next use
 * reads what the other processes merged meanwhile. The stored row is therefore the sum of every
 * process's takes, and a restart starts from it.
 *
 * Accuracy across processes (listen.apiWorkers now; replicas on one PostgreSQL, issue 17): a
 * process sees the others' takes only at its merges, so within one merge interval N processes
 * may each spend what the bucket held at their last look: up to N × burst at once instead of
 * burst. What they overspent is not forgotten: the stored bucket goes negative (down to −burst)
 * and refills from there, so over any longer window the rate holds. One process alone is exact.
 * A crash loses the takes of its last interval (a clean stop merges them). Issue 17 needs the
 * RateLimitStore port implemented on PostgreSQL (the merge as SELECT … FOR UPDATE + UPSERT per
 * bucket, bucketsMergedSince on an index on `at`); where an operator needs the burst exact across
 * replicas, a shorter merge interval, or a take inside the issuance transaction for that limit.
 */
export class SharedTokenBuckets {
  readonly #held = new Map<string, Held>();
  /** Buckets taken from (or given back to) since the last merge. */
  readonly #dirty = new Set<string>();
  /** Buckets the database held a row for at the last merge (or merged since), with when each is full again. */
  readonly #stored = new Map<string, number>();
  /** Unix ms of the last look at what was merged. */
  #lookedAt: number;

  constructor(
    private readonly store: RateLimitStore,
    private readonly clock: Clock,
  ) {
    this.#lookedAt = clock.now().getTime();
    this.#noteMerged(new Date(0));
  }

  /**
   * Takes one token from each bucket, or from none when any of them holds less than one (the
   * refusal names the one that refills last). A bucket may be charged while held elsewhere, so
   * "less than one" includes owed tokens.
   */
  takeAll(buckets: readonly (readonly [BucketKey, BucketRule])[]): Refusal | null {
    const now = this.clock.now().getTime();
    let refusal: Refusal | null = null;
    for (const [b, rule] of buckets) {
      const h = this.#hold(b, rule, now);
      if (h.tokens >= 1) continue;
      const retryAfterSeconds = (1 - h.tokens) / rule.perSecond;
      if (!refusal || retryAfterSeconds > refusal.retryAfterSeconds) refusal = { bucket: h.bucket, retryAfterSeconds };
    }
    if (refusal) return refusal;
    // Each #hold above left its bucket in the Map, refilled to `now`.
    for (const [b, rule] of buckets) this.#change(this.#hold(b, rule, now), -1);
    return null;
  }

  /** Gives back what takeAll took, for a request that in the end was not served. */
  giveBack(buckets: readonly (readonly [BucketKey, BucketRule])[]): void {
    const now = this.clock.now().getTime();
    for (const [b, rule] of buckets) this.#change(this.#hold(b, rule, now), +1);
  }

  /** Seconds until the bucket holds a token; null when it holds one now. Takes nothing. */
  waitFor(b: BucketKey, rule: BucketRule): number | null {
    const h = this.#hold(b, rule, this.clock.now().getTime());
    return h.tokens >= 1 ? null : (1 - h.tokens) / rule.perSecond;
  }

  /** Takes one token whether or not the bucket holds one (it may owe up to one burst): for what already happened. */
  charge(b: BucketKey, rule: BucketRule): void {
    this.#change(this.#hold(b, rule, this.clock.now().getTime()), -1);
  }

  /**
   * Merges this process's takes into the stored buckets (one transaction) and forgets the
   * buckets untouched since the last merge. When the store fails, nothing here changes: the
   * takes are merged next time.
   */
  merge(): void {
    const now = this.clock.now().getTime();
    const dirty = [...this.#dirty].map((k) => [k, this.#held.get(k)!] as const);
    const merged = new Map<string, number>();
    if (dirty.length > 0) {
      const byKey = new Map(dirty);
      this.store.mergeBuckets(
        dirty.map(([, h]) => h.bucket),
        (b, stored) => {
          const h = byKey.get(heldKey(b))!;
          const s = refilled(stored, h.rule, now);
          const tokens = Math.max(-h.rule.burst, Math.min(h.rule.burst, s - h.taken));
          merged.set(h.id, tokens);
          return storedOf(tokens, h.rule, now);
        },
        new Date(now),
      );
    }
    for (const [k, h] of this.#held) {
      const tokens = merged.get(k);
      if (tokens === undefined) {
        this.#held.delete(k);
        continue;
      }
      h.tokens = tokens;
      h.at = now;
      h.taken = 0;
    }
    this.#dirty.clear();
    for (const [k, fullAt] of this.#stored) if (fullAt <= now) this.#stored.delete(k);
    this.#noteMerged(new Date(this.#lookedAt - MERGED_SINCE_MARGIN_MS));
    this.#lookedAt = now;
  }

  /** Learns which buckets have a stored row: those merged (by any process) since `since`. */
  #noteMerged(since: Date): void {
    for (const r of this.store.bucketsMergedSince(since)) this.#stored.set(heldKey(r), r.fullAt.getTime());
  }

  #hold(b: BucketKey, rule: BucketRule, now: number): Held {
    const k = heldKey(b);
    let h = this.#held.get(k);
    if (!h) {
      // No row at the last look: a full bucket, unless another process merged one since (seen
      // at the next merge; the overshoot that allows is the one described above).
      const stored = this.#stored.has(k) ? this.store.readBucket(b) : null;
      h = { id: k, bucket: b, rule, tokens: refilled(stored, rule, now), at: now, taken: 0 };
      this.#held.set(k, h);
    } else if (now > h.at) {
      h.tokens = Math.min(rule.burst, h.tokens + ((now - h.at) / 1000) * rule.perSecond);
      h.at = now;
    }
    return h;
  }

  #change(h: Held, by: 1 | -1): void {
    h.tokens = Math.max(-h.rule.burst, Math.min(h.rule.burst, h.tokens + by));
    h.taken -= by;
    this.#dirty.add(h.id);
  }
}

function heldKey(b: BucketKey): string {
  return `${b.limit}\n${b.key}`;
}

/** What a stored bucket holds at `now` (a missing one is full); a clock that went back refills nothing. */
function refilled(stored: StoredBucket | null, rule: BucketRule, now: number): number {
  if (!stored) return rule.burst;
  const elapsed = Math.max(0, now - stored.at.getTime());
  return Math.min(rule.burst, stored.tokens + (elapsed / 1000) * rule.perSecond);
}

/** null for a full bucket: stored as no row at all. */
function storedOf(tokens: number, rule: BucketRule, now: number): StoredBucket | null {
  if (tokens >= rule.burst) return null;
  return { tokens, at: new Date(now), fullAt: new Date(now + Math.ceil(((rule.burst - tokens) / rule.perSecond) * 1000)) };
}
