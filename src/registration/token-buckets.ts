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
 * learns at each merge), so a new subject or address costs no database call at all.
 *
 * Each process takes from its own copy of a bucket and remembers how much it took; `merge()`,
 * about once a second, subtracts that from the stored bucket in one write transaction (no
 * fsynced write per request on the event loop, which would cost more than a signature), adopts
 * the result, and forgets the buckets it did not touch since the last merge, so that the next use
 * reads what the other processes merged meanwhile. The store's port is asynchronous: requests go
 * on taking while a merge's transaction runs, and what they take then waits for the next merge. The stored row is therefore the sum of every
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
  /** Buckets taken from (or given back to) since the last merge began. */
  readonly #dirty = new Set<string>();
  /** Buckets the database held a row for at the last merge (or merged since), with when each is full again. */
  readonly #stored = new Map<string, number>();
  /** Unix ms of the last look at what was merged. */
  #lookedAt: number;
  /**
   * The first look at what is stored (every row, since the epoch), started by the constructor;
   * a bucket met before it is done waits for it, and one that fails is tried again by the next
   * bucket met, so a restart never starts from full buckets it has not looked at.
   */
  #firstLook: Promise<void> | undefined;
  #firstLookDone = false;
  /** The merge running, so two never overlap (the timer and close()). */
  #merging: Promise<void> | null = null;

  constructor(
    private readonly store: RateLimitStore,
    private readonly clock: Clock,
  ) {
    this.#lookedAt = clock.now().getTime();
    // Its failure is met again (and reported) by the first bucket that waits for it.
    this.#lookFirst().catch(() => {});
  }

  /**
   * Takes one token from each bucket, or from none when any of them holds less than one (the
   * refusal names the one that refills last). A bucket may be charged while held elsewhere, so
   * "less than one" includes owed tokens. Rejects only when a bucket cannot be read from the store.
   */
  async takeAll(buckets: readonly (readonly [BucketKey, BucketRule])[]): Promise<Refusal | null> {
    const held = this.#heldNow(buckets) ?? (await this.#holdAll(buckets));
    // Synchronous from here on: no other request takes between this check and the take.
    let refusal: Refusal | null = null;
    for (let i = 0; i < held.length; i++) {
      const h = held[i]!;
      if (h.tokens >= 1) continue;
      const retryAfterSeconds = (1 - h.tokens) / buckets[i]![1].perSecond;
      if (!refusal || retryAfterSeconds > refusal.retryAfterSeconds) refusal = { bucket: h.bucket, retryAfterSeconds };
    }
    if (refusal) return refusal;
    for (const h of held) this.#change(h, -1);
    return null;
  }

  /**
   * Gives back what takeAll took, for a request that in the end was not served: at once, within
   * the call, for a bucket still held (the usual case); after reading it, for one a merge forgot.
   */
  giveBack(buckets: readonly (readonly [BucketKey, BucketRule])[]): Promise<void> {
    const held = this.#heldNow(buckets);
    if (!held) return this.#holdAll(buckets).then((h) => h.forEach((x) => this.#change(x, +1)));
    for (const h of held) this.#change(h, +1);
    return Promise.resolve();
  }

  /** Seconds until the bucket holds a token; null when it holds one now. Takes nothing. */
  async waitFor(b: BucketKey, rule: BucketRule): Promise<number | null> {
    const [h] = this.#heldNow([[b, rule]]) ?? (await this.#holdAll([[b, rule]]));
    return h!.tokens >= 1 ? null : (1 - h!.tokens) / rule.perSecond;
  }

  /**
   * Takes one token whether or not the bucket holds one (it may owe up to one burst): for what
   * already happened. Within the call when the bucket is held here, else once it is read.
   */
  charge(b: BucketKey, rule: BucketRule): Promise<void> {
    const held = this.#heldNow([[b, rule]]);
    if (!held) return this.#holdAll([[b, rule]]).then(([h]) => this.#change(h!, -1));
    this.#change(held[0]!, -1);
    return Promise.resolve();
  }

  /**
   * Merges this process's takes into the stored buckets (one transaction) and forgets the
   * buckets untouched since the last merge. When the store fails, nothing here changes: the
   * takes are merged next time. A merge already running is joined, not started again.
   */
  merge(): Promise<void> {
    this.#merging ??= this.#mergeOnce().finally(() => (this.#merging = null));
    return this.#merging;
  }

  /** After the running merge (if any), one more, so that every take made so far is merged (a clean stop). */
  async flush(): Promise<void> {
    await this.#merging?.catch(() => {});
    await this.merge();
  }

  async #mergeOnce(): Promise<void> {
    const now = this.clock.now().getTime();
    // What is merged is what was taken before this point: requests go on taking while the store
    // works (its transaction is asynchronous), and those takes stay here for the next merge.
    const sent = new Map<string, { h: Held; taken: number }>();
    for (const k of this.#dirty) {
      const h = this.#held.get(k)!;
      sent.set(k, { h, taken: h.taken });
    }
    this.#dirty.clear();
    const merged = new Map<string, number>();
    if (sent.size > 0) {
      try {
        await this.store.mergeBuckets(
          [...sent.values()].map(({ h }) => h.bucket),
          (b, stored) => {
            const { h, taken } = sent.get(heldKey(b))!;
            const tokens = clamp(refilled(stored, h.rule, now) - taken, h.rule);
            merged.set(h.id, tokens);
            return storedOf(tokens, h.rule, now);
          },
          new Date(now),
        );
      } catch (err) {
        for (const k of sent.keys()) this.#dirty.add(k);
        throw err;
      }
    }
    for (const [k, h] of this.#held) {
      const tokens = merged.get(k);
      if (tokens === undefined) {
        // Untouched since the last merge: the next use reads what the other processes merged.
        if (!this.#dirty.has(k)) this.#held.delete(k);
        continue;
      }
      // The stored bucket, less what was taken here while the merge ran (merged next time).
      const since = h.taken - sent.get(k)!.taken;
      h.tokens = clamp(tokens - since, h.rule);
      h.at = now;
      h.taken = since;
    }
    for (const [k, fullAt] of this.#stored) if (fullAt <= now) this.#stored.delete(k);
    // When this fails, #lookedAt stays: the next merge looks back from the same point.
    await this.#noteMerged(new Date(this.#lookedAt - MERGED_SINCE_MARGIN_MS));
    this.#lookedAt = now;
  }

  #lookFirst(): Promise<void> {
    this.#firstLook ??= this.#noteMerged(new Date(0)).then(
      () => {
        this.#firstLookDone = true;
      },
      (err: unknown) => {
        this.#firstLook = undefined;
        throw err;
      },
    );
    return this.#firstLook;
  }

  /** Learns which buckets have a stored row: those merged (by any process) since `since`. */
  async #noteMerged(since: Date): Promise<void> {
    for (const r of await this.store.bucketsMergedSince(since)) this.#stored.set(heldKey(r), r.fullAt.getTime());
  }

  /** The buckets as held here, refilled to now, without awaiting anything; null when one is not held (then #holdAll). */
  #heldNow(buckets: readonly (readonly [BucketKey, BucketRule])[]): Held[] | null {
    const held: Held[] = [];
    for (const [b] of buckets) {
      const h = this.#held.get(heldKey(b));
      if (!h) return null;
      held.push(h);
    }
    const now = this.clock.now().getTime();
    for (const h of held) refill(h, now);
    return held;
  }

  /**
   * The buckets as held here, refilled to now. A bucket not held is read first (only when the
   * store has a row for it); the refill and the return are synchronous, after the last read.
   */
  async #holdAll(buckets: readonly (readonly [BucketKey, BucketRule])[]): Promise<Held[]> {
    const loaded: Held[] = [];
    for (const [b, rule] of buckets) loaded.push(this.#held.get(heldKey(b)) ?? (await this.#load(b, rule)));
    const now = this.clock.now().getTime();
    return loaded.map((l) => {
      let h = this.#held.get(l.id);
      if (!h) {
        // A merge forgot it while another bucket was read: adopt it again (it was untouched, so
        // it owes the store nothing; it may miss what others merged since, as any held bucket does).
        h = l;
        this.#held.set(h.id, h);
      }
      refill(h, now);
      return h;
    });
  }

  /** Holds a bucket this process does not hold: full, unless the store has a row for it. */
  async #load(b: BucketKey, rule: BucketRule): Promise<Held> {
    const k = heldKey(b);
    if (!this.#firstLookDone) await this.#lookFirst();
    // No row at the last look: a full bucket, unless another process merged one since (seen
    // at the next merge; the overshoot that allows is the one described above).
    const stored = this.#stored.has(k) ? await this.store.readBucket(b) : null;
    // Another request may have held it while this one read.
    const held = this.#held.get(k);
    if (held) return held;
    const now = this.clock.now().getTime();
    const h: Held = { id: k, bucket: b, rule, tokens: refilled(stored, rule, now), at: now, taken: 0 };
    this.#held.set(k, h);
    return h;
  }

  #change(h: Held, by: 1 | -1): void {
    h.tokens = clamp(h.tokens + by, h.rule);
    h.taken -= by;
    this.#dirty.add(h.id);
  }
}

/** Adds what the bucket refilled since it was counted (a clock that went back refills nothing). */
function refill(h: Held, now: number): void {
  if (now > h.at) {
    h.tokens = Math.min(h.rule.burst, h.tokens + ((now - h.at) / 1000) * h.rule.perSecond);
    h.at = now;
  }
}

/** What a bucket may hold: at most its burst, and owe at most one burst. */
function clamp(tokens: number, rule: BucketRule): number {
  return Math.max(-rule.burst, Math.min(rule.burst, tokens));
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
