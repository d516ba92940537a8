/**
 * Rate limits (issue 15, SPEC `429 rate_limited` with Retry-After) on the real daemon over real
 * HTTPS: issuance per subject and per provisioner, renewals per lineage, failed token
 * verifications per client address; kept in the database across a restart; counted in /metrics.
 * Then the shared buckets themselves: two processes on one database, and refilling, by the clock;
 * and the store under them: a merge of many buckets at once, and merges of two processes racing.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient } from "./harness/ca-client.js";
import { postApi, signBody, type ApiResponse } from "./harness/http.js";
import { makeCsr } from "./harness/openssl.js";
import { samples, scrape, total } from "./harness/prometheus.js";
import { loadConfig } from "../src/config/load.js";
import { ManualClock } from "../src/core/clock.js";
import { createLogger } from "../src/log/logger.js";
import { RateLimits, clientKey, type RateLimitRules } from "../src/registration/rate-limits.js";
import type { CaStorage } from "../src/storage/ca-storage.js";
import { STORAGE_BACKENDS, useStorageBackend } from "./harness/storage-backends.js";
import type { BucketKey, RateLimitStore, StoredBucket } from "../src/storage/ports.js";

const LIMITED = "fleetca_rate_limited_total";
/** One token per 100 s: nothing refills while a test runs, so Retry-After is close to 100. */
const SLOW = 0.01;

/** 429 rate_limited for `limit`, with a Retry-After of whole seconds that the bucket's refill rate explains. */
function expectLimited(r: ApiResponse, limit: string): void {
  expect([r.status, r.body?.error], r.raw).toEqual([429, "rate_limited"]);
  expect(r.body.message).toMatch(new RegExp(`^${limit}: retry after \\d+s$`));
  const retryAfter = r.headers?.["retry-after"];
  expect(retryAfter).toMatch(/^\d+$/);
  // At 0.01 tokens/s an empty bucket has its next token in at most 100 s.
  expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
  expect(Number(retryAfter)).toBeLessThanOrEqual(100);
}

describe("rate limits on a running daemon", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  /** Refusals this daemon run made, by limit, to compare with /metrics. */
  const refused: Record<string, number> = {};
  const note = (limit: string) => (refused[limit] = (refused[limit] ?? 0) + 1);

  const sign = async (sub: string, opts: { localAddress?: string; token?: string } = {}) => {
    const token = opts.token ?? (await ws.token(sub, [`${sub}.internal`]));
    const csr = makeCsr(ws.dir, `${sub}-${Math.random().toString(16).slice(2)}`);
    return postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem), ...(opts.localAddress && { localAddress: opts.localAddress }) });
  };

  beforeAll(async () => {
    ws = new CaWorkspace({
      extraConfig: [
        "rateLimits:",
        `  issuancePerSubject: { perSecond: ${SLOW}, burst: 3 }`,
        `  renewalsPerLineage: { perSecond: ${SLOW}, burst: 2 }`,
        `  failedTokensPerAddress: { perSecond: ${SLOW}, burst: 4 }`,
        "",
      ].join("\n"),
    });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  }, 60_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("a burst over the per-subject limit: 429 with Retry-After, nothing stored, no token spent; other subjects unaffected", async () => {
    const tokens = await Promise.all(Array.from({ length: 5 }, () => ws.token("burst-a", ["burst-a.internal"])));
    const before = ws.rowCounts();
    const answers = await Promise.all(tokens.map((token) => sign("burst-a", { token })));
    expect(answers.map((a) => a.status).sort()).toEqual([201, 201, 201, 429, 429]);
    for (const a of answers.filter((x) => x.status === 429)) {
      expectLimited(a, "issuance_per_subject");
      note("issuance_per_subject");
    }
    const after = ws.rowCounts();
    // Three certificates, three tokens spent: the two refused requests left nothing behind.
    expect(after.certificates! - before.certificates!).toBe(3);
    expect(after.used_tokens! - before.used_tokens!).toBe(3);

    const other = await sign("burst-b");
    expect(other.status, other.raw).toBe(201);
  });

  it("the limit survives a restart: the same subject is still refused, another is not", async () => {
    await d.stop();
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    for (const k of Object.keys(refused)) delete refused[k]; // a new process: its counters start at 0

    const again = await sign("burst-a");
    expectLimited(again, "issuance_per_subject");
    note("issuance_per_subject");
    const other = await sign("burst-c");
    expect(other.status, other.raw).toBe(201);
  });

  it("failed token verifications from one address: that address gets 429 before its token is verified, another address still works", async () => {
    const from = "127.0.0.2";
    for (let i = 0; i < 4; i++) {
      const r = await sign("forger", { token: "a.b.c", localAddress: from });
      expect([r.status, r.body?.message], r.raw).toEqual([401, "malformed"]);
    }
    // A valid token now: refused for the address, before verification, and not spent.
    const token = await ws.token("after-forgery", ["after-forgery.internal"]);
    const limited = await sign("after-forgery", { token, localAddress: from });
    expectLimited(limited, "failed_tokens_per_address");
    note("failed_tokens_per_address");
    // A bad token from there is refused the same way: it is never looked at.
    expectLimited(await sign("forger", { token: "a.b.c", localAddress: from }), "failed_tokens_per_address");
    note("failed_tokens_per_address");

    // The same token from another address: verified, unspent, issued.
    const elsewhere = await sign("after-forgery", { token, localAddress: "127.0.0.1" });
    expect(elsewhere.status, elsewhere.raw).toBe(201);
    // A bad token from 127.0.0.1 is judged on its own merits (401, not 429).
    const bad = await sign("forger", { token: "a.b.c", localAddress: "127.0.0.1" });
    expect([bad.status, bad.body?.message]).toEqual([401, "malformed"]);
    // Replays are not held against an address: honest clients send them after a lost answer or
    // a CA crash. More of them than the burst, then a fresh token from there still works.
    const retrier = "127.0.0.3";
    for (let i = 0; i < 6; i++) {
      const r = await sign("after-forgery", { token, localAddress: retrier });
      expect([r.status, r.body?.message], r.raw).toEqual([401, "replayed"]);
    }
    const fresh = await sign("after-replays", { token: await ws.token("after-replays", ["after-replays.internal"]), localAddress: retrier });
    expect(fresh.status, fresh.raw).toBe(201);
  });

  it("a renewal burst over the lineage limit: 429 with Retry-After; another certificate renews", async () => {
    // Along the chain (a renewed certificate is superseded): each successor renews in turn, and
    // the chain shares one bucket.
    const cert = await ca.issue("renew-a");
    const answers: ApiResponse[] = [];
    let holder = cert;
    for (let i = 0; i < 3; i++) {
      const a = await ca.renew(holder.identity);
      answers.push(a);
      if (a.status === 201) holder = ca.keep(`renew-a-${i}`, a.body as never, cert.keyPath);
    }
    expect(answers.map((a) => a.status)).toEqual([201, 201, 429]);
    expectLimited(answers[2]!, "renewals_per_lineage");
    note("renewals_per_lineage");

    const other = await ca.issue("renew-b");
    const renewed = await ca.renew(other.identity);
    expect(renewed.status, renewed.raw).toBe(201);
  });

  it("/metrics counts every refusal by limit (fleetca_rate_limited_total)", async () => {
    const m = await scrape(`${d.publicUrl}/metrics`);
    expect(m.status).toBe(200);
    for (const limit of ["issuance_per_provisioner", "issuance_per_subject", "renewals_per_lineage", "failed_tokens_per_address"]) {
      // Every limit has its series, at 0 when nothing was refused.
      expect(samples(m.samples, LIMITED, { limit }), limit).toHaveLength(1);
      expect(total(m.samples, LIMITED, { limit }), limit).toBe(refused[limit] ?? 0);
    }
    expect(refused).toEqual({ issuance_per_subject: 1, failed_tokens_per_address: 2, renewals_per_lineage: 1 });
  });
});

describe("the per-provisioner limit", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  beforeAll(async () => {
    ws = new CaWorkspace({
      extraConfig: [
        "provisioners: [ { name: bootstrap, type: bootstrap }, { name: second, type: bootstrap } ]",
        "rateLimits:",
        `  issuancePerProvisioner: { perSecond: ${SLOW}, burst: 2 }`,
        "  issuancePerSubject: false",
        "",
      ].join("\n"),
    });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  }, 60_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("counts every subject of one provisioner together, and leaves other provisioners alone", async () => {
    const sign = async (sub: string, provisioner: string) => {
      const token = await ws.token(sub, [`${sub}.internal`], ["--provisioner", provisioner]);
      return postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(makeCsr(ws.dir, sub).csrPem) });
    };
    expect((await sign("p1", "bootstrap")).status).toBe(201);
    expect((await sign("p2", "bootstrap")).status).toBe(201);
    expectLimited(await sign("p3", "bootstrap"), "issuance_per_provisioner");
    expect((await sign("p4", "second")).status).toBe(201);
  });
});

describe("with API workers (listen.apiWorkers: 2): one set of buckets for every process", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  beforeAll(async () => {
    ws = new CaWorkspace({ listen: "apiWorkers: 2", extraConfig: `rateLimits: { issuancePerSubject: { perSecond: ${SLOW}, burst: 4 } }\n` });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  }, 60_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("takes on one worker count on the other after their merges, and /metrics sums their refusals", async () => {
    // A new connection each time: node:cluster hands each to the next worker.
    const sign = async (sub: string) => {
      const token = await ws.token(sub, [`${sub}.internal`]);
      const csr = makeCsr(ws.dir, `${sub}-${Math.random().toString(16).slice(2)}`);
      return postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem), headers: { connection: "close" } });
    };
    for (let i = 0; i < 4; i++) expect((await sign("shared")).status).toBe(201);
    // Each worker merges its takes about once a second and then forgets what it held; real time
    // (the workers run the system clock): after two merges each reads the bucket both emptied.
    await new Promise((r) => setTimeout(r, 2_500));
    // Either worker alone took only some of the 4: each would still have tokens of its own.
    for (let i = 0; i < 4; i++) expectLimited(await sign("shared"), "issuance_per_subject");
    const m = await scrape(`${d.publicUrl}/metrics`);
    expect(total(m.samples, LIMITED, { limit: "issuance_per_subject" })).toBe(4);
  });
});

describe.each(STORAGE_BACKENDS)("shared token buckets on %s", (backendName) => {
  const backend = useStorageBackend(backendName);
  const rules: RateLimitRules = {
    issuance_per_provisioner: null,
    issuance_per_subject: { perSecond: 0.5, burst: 4 },
    renewals_per_lineage: null,
    failed_tokens_per_address: null,
  };
  const log = createLogger({ level: "silent", format: "json", write: () => {} });

  /** A process of its own on the test's one database: its own connection (SQLite) or pool (PostgreSQL). */
  async function processOn(db: CaStorage, clock: ManualClock): Promise<RateLimits> {
    return new RateLimits(rules, (await backend.another(db)).rateLimits, clock, log);
  }

  const refusedWith = async (f: () => Promise<unknown>): Promise<number | null> => {
    try {
      await f();
      return null;
    } catch (e) {
      expect((e as { code?: string }).code).toBe("rate_limited");
      return (e as { retryAfterSeconds: number }).retryAfterSeconds;
    }
  };

  it("two processes' takes add up in the database: what they overspent between merges is owed, not forgotten", async () => {
    const clock = new ManualClock(new Date("2026-12-01T00:00:00Z"));
    const db = await backend.fresh();
    const a = await processOn(db, clock);
    const b = await processOn(db, clock);
    // Between merges each sees a full bucket of 4 and takes 3: 6 in all.
    for (let i = 0; i < 3; i++) {
      await a.takeIssuance("p", "s");
      await b.takeIssuance("p", "s");
    }
    await a.merge();
    await b.merge();
    // a merged first and still holds what it saw then (4 − 3); its next merge (a second later,
    // from its timer) forgets it, so its next use reads the stored bucket.
    await a.merge();
    // Stored: 4 − 6 = −2. A fresh process (a restart) and both old ones now refuse, until the
    // bucket has refilled 3 tokens (−2 → 1) at 0.5/s: 6 s.
    const c = await processOn(db, clock);
    for (const p of [a, b, c]) expect(await refusedWith(() => p.takeIssuance("p", "s"))).toBe(6);
    clock.advance(6_000);
    expect(await refusedWith(() => c.takeIssuance("p", "s"))).toBeNull();
    // Another subject was never touched.
    expect(await refusedWith(() => a.takeIssuance("p", "other"))).toBeNull();
  });

  it("a reservation given back (the request failed after all) is not counted", async () => {
    const clock = new ManualClock(new Date("2026-12-01T00:00:00Z"));
    const db = await backend.fresh();
    const a = await processOn(db, clock);
    for (let i = 0; i < 10; i++) (await a.takeIssuance("p", "s")).giveBack();
    await a.merge();
    const b = await processOn(db, clock);
    for (let i = 0; i < 4; i++) expect(await refusedWith(() => b.takeIssuance("p", "s"))).toBeNull();
    expect(await refusedWith(() => b.takeIssuance("p", "s"))).toBe(2);
  });

  /** The real buckets, with each merge's commit held back until `release()`: a slow database. */
  function slowMerges(db: CaStorage): { store: RateLimitStore; merges: () => number; release: () => void } {
    const inner = db.rateLimits;
    let merges = 0;
    let gate: { promise: Promise<void>; resolve: () => void } | null = null;
    const store: RateLimitStore = {
      readBucket: (b) => inner.readBucket(b),
      bucketsMergedSince: (since) => inner.bucketsMergedSince(since),
      mergeBuckets: async (buckets, merge, now) => {
        merges++;
        let resolve!: () => void;
        gate = { promise: new Promise<void>((r) => (resolve = r)), resolve };
        await gate.promise;
        await inner.mergeBuckets(buckets, merge, now);
      },
    };
    return { store, merges: () => merges, release: () => gate?.resolve() };
  }

  it("takes made while a merge's transaction runs are kept for the next merge, and merges never overlap", async () => {
    const clock = new ManualClock(new Date("2026-12-01T00:00:00Z"));
    const db = await backend.fresh();
    const slow = slowMerges(db);
    const a = new RateLimits(rules, slow.store, clock, log);
    await a.takeIssuance("p", "s");
    const first = a.merge();
    await vi.waitFor(() => expect(slow.merges()).toBe(1));
    // During the merge: two more takes, and a second merge (the timer) that joins the first.
    await a.takeIssuance("p", "s");
    await a.takeIssuance("p", "s");
    const second = a.merge();
    expect(slow.merges()).toBe(1);
    slow.release();
    await Promise.all([first, second]);
    // The bucket here still counts all three: one more take, then a refusal.
    expect(await refusedWith(() => a.takeIssuance("p", "s"))).toBeNull();
    expect(await refusedWith(() => a.takeIssuance("p", "s"))).toBe(2);
    // close() merges the rest: a fresh process on the file sees all four taken.
    const closed = a.close();
    await vi.waitFor(() => expect(slow.merges()).toBe(2));
    slow.release();
    await closed;
    const b = await processOn(db, clock);
    expect(await refusedWith(() => b.takeIssuance("p", "s"))).toBe(2);
  });

  it("a bucket the database cannot read: 503 unavailable, not a 500 and not a free pass", async () => {
    const clock = new ManualClock(new Date("2026-12-01T00:00:00Z"));
    const db = await backend.fresh();
    const seed = await processOn(db, clock);
    await seed.takeIssuance("p", "s");
    await seed.merge();
    const failing: RateLimitStore = {
      readBucket: () => Promise.reject(new Error("connection lost")),
      bucketsMergedSince: (since) => db.rateLimits.bucketsMergedSince(since),
      mergeBuckets: () => Promise.reject(new Error("connection lost")),
    };
    const a = new RateLimits(rules, failing, clock, log);
    await expect(a.takeIssuance("p", "s")).rejects.toMatchObject({ code: "unavailable" });
    // A bucket with no stored row needs no read.
    expect(await refusedWith(() => a.takeIssuance("p", "other"))).toBeNull();
  });

  /**
   * Many buckets whose keys sort differently by bytes and by a locale (case, accents, astral
   * characters) and hold what an array literal must escape (quotes, backslashes, braces, NULL),
   * handed over in neither order.
   */
  function manyBuckets(n: number): BucketKey[] {
    const shapes = ["k", "K", "é", "z", "\u{1F600}", 'a"b', "a\\b", "{x,y}", "NULL", " sp"];
    const keys = Array.from({ length: n }, (_, i) => ({ limit: i % 2 ? "issuance_per_subject" : "renewals_per_lineage", key: `${shapes[i % shapes.length]}-${i}` }));
    // 367 is prime and no factor of the sizes used here: a permutation of 0..n−1.
    return keys.map((_, i) => keys[(i * 367) % n]!);
  }
  const indexOf = (b: BucketKey): number => Number(b.key.slice(b.key.lastIndexOf("-") + 1));
  const at = new Date("2026-12-01T00:00:00.123Z");
  const later = new Date("2027-01-01T00:00:00Z");

  it("a merge of 500 buckets: new rows, stored rows and full buckets (deleted) each merged once on their stored value; full rows before now pruned", async () => {
    const db = await backend.fresh();
    const store = db.rateLimits;
    const buckets = manyBuckets(500);
    const seeded = (i: number): StoredBucket => ({ tokens: i + 0.25, at: new Date(at.getTime() - i), fullAt: new Date(later.getTime() + i) });
    // Every even bucket stored; and a row not in the merge that is full before `now`.
    await store.mergeBuckets(
      buckets.filter((b) => indexOf(b) % 2 === 0),
      (b) => seeded(indexOf(b)),
      at,
    );
    const stale = { limit: "issuance_per_subject", key: "stale" };
    await store.mergeBuckets([stale], () => ({ tokens: 1, at, fullAt: at }), new Date(0));
    expect(await store.readBucket(stale)).not.toBeNull();

    const seen = new Map<number, (StoredBucket | null)[]>();
    const now = new Date(at.getTime() + 1000);
    // Every fifth bucket is full after its merge: a stored row deleted, or a new one never kept.
    const next = (i: number, stored: StoredBucket | null): StoredBucket | null =>
      i % 5 === 0 ? null : { tokens: (stored?.tokens ?? 0) + 1.5, at: now, fullAt: new Date(later.getTime() + 1000 * i) };
    await store.mergeBuckets(
      buckets,
      (b, stored) => {
        const i = indexOf(b);
        seen.set(i, [...(seen.get(i) ?? []), stored]);
        return next(i, stored);
      },
      now,
    );
    for (const b of buckets) {
      const i = indexOf(b);
      expect(seen.get(i), b.key).toEqual([i % 2 === 0 ? seeded(i) : null]);
      expect(await store.readBucket(b), b.key).toEqual(next(i, i % 2 === 0 ? seeded(i) : null));
    }
    expect(await store.readBucket(stale)).toBeNull();
    const kept = (await store.bucketsMergedSince(new Date(0))).map((b) => `${b.limit} ${b.key}`).sort();
    expect(kept).toEqual(
      buckets
        .filter((b) => indexOf(b) % 5 !== 0)
        .map((b) => `${b.limit} ${b.key}`)
        .sort(),
    );
  });

  it("two processes merging overlapping sets of 400 buckets at once, 20 times: every merge counted (no lost update), none fails (no deadlock)", async () => {
    const db = await backend.fresh();
    const a = (await backend.another(db)).rateLimits;
    const b = (await backend.another(db)).rateLimits;
    const buckets = manyBuckets(600);
    const ofA = buckets.filter((x) => indexOf(x) < 400);
    const ofB = buckets.filter((x) => indexOf(x) >= 200).reverse();
    // Each merge adds one; two thirds of the buckets are full (deleted) when they reach 2 or 3,
    // so rows go and come back while the other process merges them too. Every other round merges
    // only the others, whose rows are then all stored: neither merge has a row to claim, and
    // each must wait for the other's lock on the rows both merge.
    const fullAt = (i: number): number => [Infinity, 2, 3][i % 3]!;
    const add = (x: BucketKey, stored: StoredBucket | null): StoredBucket | null => {
      const tokens = (stored?.tokens ?? 0) + 1;
      return tokens === fullAt(indexOf(x)) ? null : { tokens, at, fullAt: later };
    };
    const rounds = 20;
    for (let round = 0; round < rounds; round++) {
      const merged: string[] = [];
      const counting = (x: BucketKey, stored: StoredBucket | null) => (merged.push(`${x.limit} ${x.key}`), add(x, stored));
      const these = (set: BucketKey[]) => (round % 2 ? set.filter((x) => indexOf(x) % 3 === 0) : set);
      await Promise.all([a.mergeBuckets(these(ofA), counting, at), b.mergeBuckets(these(ofB), counting, at)]);
      expect(merged.length).toBe(these(ofA).length + these(ofB).length);
    }
    for (const x of buckets) {
      const i = indexOf(x);
      const merges = (i % 3 === 0 ? rounds : rounds / 2) * (i >= 200 && i < 400 ? 2 : 1);
      const tokens = Number.isFinite(fullAt(i)) ? merges % fullAt(i) : merges;
      expect(await a.readBucket(x), x.key).toEqual(tokens === 0 ? null : { tokens, at, fullAt: later });
    }
  });

  if (backendName === "PostgreSQL") {
    /** Every statement a pg client sends while `f` runs (BEGIN and COMMIT included): its round trips. */
    async function statementsOf(f: () => Promise<unknown>): Promise<number> {
      const spy = vi.spyOn(pg.Client.prototype, "query");
      try {
        await f();
        return spy.mock.calls.length;
      } finally {
        spy.mockRestore();
      }
    }

    it("a merge takes as many round trips for 500 buckets as for 6: BEGIN, claim, lock, UPDATE, DELETE, prune, COMMIT", async () => {
      const db = await backend.fresh();
      const store = db.rateLimits;
      const roundTrips = async (buckets: BucketKey[]): Promise<number> => {
        // A third stored; then new and stored buckets, some kept and some full (deleted).
        await store.mergeBuckets(
          buckets.filter((_, n) => n % 3 === 0),
          () => ({ tokens: 1, at, fullAt: later }),
          at,
        );
        return statementsOf(() => store.mergeBuckets(buckets, (x, stored) => (indexOf(x) % 2 ? null : { tokens: (stored?.tokens ?? 0) - 1, at, fullAt: later }), at));
      };
      const buckets = manyBuckets(506);
      expect([await roundTrips(buckets.slice(0, 6)), await roundTrips(buckets.slice(6))]).toEqual([7, 7]);
    });

    it("a row deleted by another process between this merge's claim and its lock: the merge starts over and finds no row", async () => {
      const db = await backend.fresh();
      const store = db.rateLimits;
      const other = (await backend.another(db)).rateLimits;
      const gone = { limit: "issuance_per_subject", key: "a-gone" };
      const fresh = { limit: "issuance_per_subject", key: "b-new" };
      await store.mergeBuckets([gone], () => ({ tokens: 3, at, fullAt: later }), at);
      // Right after this merge's first statement (its INSERT, which finds `gone` stored and does
      // not lock it), the other process finds `gone` full and deletes it, and commits.
      const original = pg.Client.prototype.query;
      let armed = true;
      const spy = vi.spyOn(pg.Client.prototype, "query").mockImplementation(function (this: pg.Client, ...args: unknown[]) {
        const sent = (original as (...a: unknown[]) => unknown).apply(this, args);
        const text = typeof args[0] === "string" ? args[0] : "";
        if (!armed || !text.trimStart().startsWith("INSERT INTO rate_limit_buckets")) return sent;
        armed = false;
        return (sent as Promise<unknown>).then(async (r) => {
          await other.mergeBuckets([gone], () => null, at);
          return r;
        });
      } as typeof original);
      const seen: [string, StoredBucket | null][] = [];
      try {
        await store.mergeBuckets(
          [fresh, gone],
          (x, stored) => (seen.push([x.key, stored]), { tokens: (stored?.tokens ?? 0) + 1, at, fullAt: later }),
          at,
        );
      } finally {
        spy.mockRestore();
      }
      expect(armed).toBe(false);
      expect(seen).toEqual([
        ["a-gone", null],
        ["b-new", null],
      ]);
      for (const x of [gone, fresh]) expect(await other.readBucket(x)).toEqual({ tokens: 1, at, fullAt: later });
    });
  }
});

describe("rate-limit client keys", () => {
  it("counts an IPv6 client by its /64 and an IPv4-mapped one as IPv4", () => {
    expect(clientKey("2001:db8:1:2:aaaa::1")).toBe(clientKey("2001:0db8:0001:0002:ffff:1:2:3"));
    expect(clientKey("2001:db8:1:2::1")).not.toBe(clientKey("2001:db8:1:3::1"));
    expect(clientKey("::ffff:10.1.2.3")).toBe("10.1.2.3");
    expect(clientKey("10.1.2.3")).toBe("10.1.2.3");
  });
});

describe("config rateLimits", () => {
  const load = (yaml: string) => {
    const dir = mkdtempSync(join(tmpdir(), "fleetca-cfg-"));
    try {
      writeFileSync(join(dir, "c.yaml"), yaml);
      return loadConfig(join(dir, "c.yaml"), {}).config.rateLimits;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("defaults every limit, keeps a default for a field left out, and switches a limit off with false", () => {
    expect(load("{}\n")).toEqual({
      issuancePerProvisioner: { perSecond: 200, burst: 20_000 },
      issuancePerSubject: { perSecond: 5, burst: 500 },
      renewalsPerLineage: { perSecond: 0.2, burst: 30 },
      failedTokensPerAddress: { perSecond: 1, burst: 60 },
    });
    const c = load("rateLimits: { issuancePerSubject: false, renewalsPerLineage: { burst: 3 } }\n");
    expect(c.issuancePerSubject).toBe(false);
    expect(c.renewalsPerLineage).toEqual({ perSecond: 0.2, burst: 3 });
  });

  it.each([
    ["a zero rate", "rateLimits: { issuancePerSubject: { perSecond: 0 } }", /rateLimits\.issuancePerSubject/],
    ["a fractional burst", "rateLimits: { renewalsPerLineage: { burst: 1.5 } }", /rateLimits\.renewalsPerLineage/],
    ["an unknown limit", "rateLimits: { perHost: false }", /rateLimits/],
  ])("refuses %s at load, naming the key", (_n, yaml, expected) => {
    expect(() => load(`${yaml}\n`)).toThrow(expected);
  });
});
