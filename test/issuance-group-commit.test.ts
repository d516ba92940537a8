import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CaError } from "../src/core/errors.js";
import type { SerialHex } from "../src/core/serial.js";
import type { CommitOutcome, IssuanceCommit } from "../src/storage/ports.js";
import type { BatchReport } from "../src/storage/sqlite/issuance-group-commit.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";

/**
 * Group commit (issue 12) on a real SQLite file (WAL, synchronous=FULL, the real schema): many
 * commits share one transaction, each keeps the outcome it would have alone, and a batch that
 * cannot commit refuses every request in it with "unavailable" and stores nothing.
 */
const ISSUER = "aa".repeat(20);
const DAY = 86_400_000;

function serialOf(n: number): SerialHex {
  return `7f${n.toString(16).padStart(30, "0")}` as SerialHex;
}

function commitOf(n: number, opts: { token?: string; idem?: string; serial?: SerialHex; issuer?: string; derOctets?: number } = {}): IssuanceCommit {
  const now = new Date();
  const serial = opts.serial ?? serialOf(n);
  return {
    certificate: {
      serial,
      issuerKeyId: opts.issuer ?? ISSUER,
      sans: { dns: [`host-${n}.internal`], ip: [], uri: [] },
      subjectCommonName: `host-${n}.internal`,
      notBefore: now,
      notAfter: new Date(now.getTime() + DAY),
      der: new Uint8Array(opts.derOctets ?? 300).fill(n & 0xff),
      provisioner: "bootstrap",
      tokenId: opts.token ?? null,
      status: "valid",
      revokedAt: null,
      revocationReason: null,
      createdAt: now,
      renewedFrom: null,
      crlShard: null,
    },
    ...(opts.token !== undefined && { tokenUse: { tokenId: opts.token, provisioner: "bootstrap", expiresAt: new Date(now.getTime() + 300_000) } }),
    ...(opts.idem !== undefined && {
      idempotency: { provisioner: "bootstrap", subject: "host", key: opts.idem, requestHash: `hash-${n}`, tokenId: opts.token ?? null, serial, expiresAt: new Date(now.getTime() + DAY) },
    }),
  };
}

/** Settles every promise; a rejection becomes the error object, for per-request assertions. */
function settleAll(ps: Array<Promise<CommitOutcome>>): Promise<Array<CommitOutcome | Error>> {
  return Promise.all(ps.map((p) => p.catch((e: Error) => e)));
}

describe("issuance group commit on a real SQLite file", () => {
  let dir: string;
  let path: string;
  let store: SqliteStore;
  let batches: BatchReport[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "fleetca-group-commit-"));
    path = join(dir, "fleetca.db");
    batches = [];
    store = new SqliteStore(path, { groupCommit: { maxBatch: 64, onBatch: (b) => batches.push(b) } });
    const now = new Date();
    store.addIssuer({
      keyId: ISSUER, role: "intermediate", keyName: "intermediate-1", parentKeyId: null, der: Uint8Array.of(0x30, 0),
      notBefore: now, notAfter: new Date(now.getTime() + 365 * DAY), status: "active", createdAt: now, revokedAt: null, revocationReason: null, activatedAt: now,
    });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("commits a batch of intents alone without an fsync (synchronous NORMAL), and any batch holding a certificate with one", async () => {
    const intent = (n: number) => ({
      kind: "intent" as const, op: "sign" as const, serial: serialOf(n), issuer: ISSUER, tbs_sha256: "00", provisioner: "bootstrap",
      jti: null, sans: [`host-${n}.internal`], key_sha256: "00", client: null, renewed_from: null,
    });
    const seen: number[] = [];
    const probe = store.db.prepare("SELECT 1").pluck();
    // Sample the connection's synchronous setting from inside each batch's transaction.
    const spy = store.db.pragma.bind(store.db);
    const sample = () => seen.push(spy("synchronous", { simple: true }) as number);
    await Promise.all([store.recordIntent(intent(1), new Date()), store.recordIntent(intent(2), new Date())]);
    sample();
    expect(seen).toEqual([2]); // FULL again once the intents-only batch is done
    expect(batches.map((b) => b.size)).toEqual([2]);
    expect(probe.get()).toBe(1);
    // An intents-only batch ran under NORMAL; a mixed one under FULL: read from the batch itself.
    const during: number[] = [];
    const orig = store.audit.append.bind(store.audit);
    store.audit.append = (f, at) => {
      during.push(spy("synchronous", { simple: true }) as number);
      return orig(f, at);
    };
    await store.recordIntent(intent(3), new Date());
    await Promise.all([store.recordIntent(intent(4), new Date()), store.commitIssuance({ ...commitOf(5, { token: "t5" }), audit: undefined })]);
    expect(during).toEqual([1, 2]);
    expect(spy("synchronous", { simple: true })).toBe(2);
    expect(store.audit.size()).toBe(4);
  });

  /** What another process (`fleetca list`) would read from the file. */
  function onDisk(): { serials: string[]; tokens: string[]; idem: Array<{ key: string; serial: string }> } {
    const db = new Database(path, { readonly: true });
    try {
      return {
        serials: db.prepare("SELECT serial FROM certificates ORDER BY serial").pluck().all() as string[],
        tokens: db.prepare("SELECT token_id FROM used_tokens ORDER BY token_id").pluck().all() as string[],
        idem: db.prepare("SELECT key, serial FROM idempotency_keys ORDER BY key").all() as Array<{ key: string; serial: string }>,
      };
    } finally {
      db.close();
    }
  }

  it("commits alone as a batch of one", async () => {
    expect(await store.commitIssuance(commitOf(1, { token: "bootstrap:t1" }))).toBe("committed");
    expect(batches).toEqual([expect.objectContaining({ size: 1, committed: true })]);
    expect(onDisk().serials).toEqual([serialOf(1)]);
  });

  it("keeps an Idempotency-Key per identity, replacing an expired row of it but never a live one (issue 15)", async () => {
    const t0 = Date.now();
    const keyed = (n: number, at: number, subject: string): IssuanceCommit => {
      const c = commitOf(n, { token: `bootstrap:t${n}`, idem: "k" });
      c.certificate.createdAt = new Date(at);
      c.idempotency = { ...c.idempotency!, subject, expiresAt: new Date(at + DAY) };
      return c;
    };
    expect(await store.commitIssuance(keyed(1, t0, "host"))).toBe("committed");
    expect(await store.commitIssuance(keyed(2, t0 + DAY - 1, "host"))).toBe("idempotency_conflict"); // still live
    expect(await store.commitIssuance(keyed(3, t0, "other-host"))).toBe("committed"); // another identity's key
    // Expired at this commit's time, not pruned yet: replaced (DO NOTHING made it a false "replayed").
    expect(await store.commitIssuance(keyed(4, t0 + DAY, "host"))).toBe("committed");
    const host = { provisioner: "bootstrap", subject: "host" };
    expect(store.findIdempotency(host, "k", new Date(t0 + DAY))?.serial).toBe(serialOf(4));
    expect(store.findIdempotency({ ...host, subject: "other-host" }, "k", new Date(t0))?.serial).toBe(serialOf(3));
    expect(store.findIdempotency(host, "k", new Date(t0 + 2 * DAY))).toBeNull(); // expired: as good as absent
    expect(onDisk().idem.map((r) => r.serial).sort()).toEqual([serialOf(3), serialOf(4)]);
  });

  it("gives each commit of a mixed batch its own outcome, in one transaction", async () => {
    // Stored before the batch: a serial to collide with and an idempotency key to conflict with.
    expect(await store.commitIssuance(commitOf(0, { token: "bootstrap:t0", idem: "key-0" }))).toBe("committed");
    batches = [];

    const results = await settleAll([
      store.commitIssuance(commitOf(1, { token: "bootstrap:t1" })), // good
      store.commitIssuance(commitOf(2, { token: "bootstrap:t2", idem: "key-2" })), // good, with a key
      store.commitIssuance(commitOf(3, { token: "bootstrap:t1" })), // the same token as #1, same batch
      store.commitIssuance(commitOf(4, { token: "bootstrap:t4", serial: serialOf(0) })), // collides with a stored serial
      store.commitIssuance(commitOf(5, { token: "bootstrap:t5", serial: serialOf(1) })), // collides with #1, same batch
      store.commitIssuance(commitOf(6, { token: "bootstrap:t6", idem: "key-2" })), // #2's key, same batch
      store.commitIssuance(commitOf(7, { token: "bootstrap:t7", idem: "key-0" })), // a stored key
      store.commitIssuance(commitOf(8)), // no token (a renewal)
      store.commitIssuance(commitOf(9, { token: "bootstrap:t0" })), // a token spent before the batch
    ]);
    expect(results).toEqual(["committed", "committed", "replayed", "serial_collision", "serial_collision", "idempotency_conflict", "idempotency_conflict", "committed", "replayed"]);
    expect(batches).toEqual([expect.objectContaining({ size: 9, committed: true })]);

    const disk = onDisk();
    expect(disk.serials).toEqual([0, 1, 2, 8].map(serialOf));
    // A refused commit spends no token: t4..t7 are free for a retry.
    expect(disk.tokens).toEqual(["bootstrap:t0", "bootstrap:t1", "bootstrap:t2"]);
    expect(disk.idem).toEqual([{ key: "key-0", serial: serialOf(0) }, { key: "key-2", serial: serialOf(2) }]);

    // Each refused one, retried alone with what the RA would change (a fresh serial), commits.
    expect(await store.commitIssuance(commitOf(14, { token: "bootstrap:t4" }))).toBe("committed");
    expect(await store.commitIssuance(commitOf(16, { token: "bootstrap:t6", idem: "key-6" }))).toBe("committed");
  });

  it("splits a burst into batches of at most maxBatch", async () => {
    const results = await settleAll(Array.from({ length: 150 }, (_, i) => store.commitIssuance(commitOf(i, { token: `bootstrap:t${i}` }))));
    expect(results.every((r) => r === "committed")).toBe(true);
    expect(batches.map((b) => b.size)).toEqual([64, 64, 22]);
    expect(onDisk().serials).toHaveLength(150);
  });

  it("refuses the whole batch with unavailable when its COMMIT fails, storing nothing", async () => {
    // A deferred foreign key is checked at COMMIT (https://sqlite.org/foreignkeys.html §4.2,
    // PRAGMA defer_foreign_keys): one row naming an unknown issuer makes the COMMIT itself fail
    // with SQLITE_CONSTRAINT_FOREIGNKEY after every statement of the batch succeeded.
    store.db.pragma("defer_foreign_keys = ON");
    const results = await settleAll([
      store.commitIssuance(commitOf(1, { token: "bootstrap:t1", idem: "key-1" })),
      store.commitIssuance(commitOf(2, { token: "bootstrap:t2" })),
      store.commitIssuance(commitOf(3, { token: "bootstrap:t3", issuer: "bb".repeat(20) })),
      store.commitIssuance(commitOf(4)),
    ]);
    for (const r of results) {
      expect(r).toBeInstanceOf(CaError);
      expect((r as CaError).code).toBe("unavailable");
      expect(((r as CaError).cause as { code?: string }).code).toBe("SQLITE_CONSTRAINT_FOREIGNKEY");
    }
    expect(batches).toEqual([expect.objectContaining({ size: 4, committed: false, cause: expect.objectContaining({ code: "SQLITE_CONSTRAINT_FOREIGNKEY" }) })]);
    expect(onDisk()).toEqual({ serials: [], tokens: [], idem: [] });
    expect(store.db.inTransaction).toBe(false);

    // Nothing was spent: the same tokens and key commit on retry.
    expect(await settleAll([
      store.commitIssuance(commitOf(1, { token: "bootstrap:t1", idem: "key-1" })),
      store.commitIssuance(commitOf(2, { token: "bootstrap:t2" })),
    ])).toEqual(["committed", "committed"]);
  });

  it("refuses the whole batch with unavailable while another process holds the write lock past busy_timeout", async () => {
    store.db.pragma("busy_timeout = 50");
    const other = new Database(path);
    try {
      other.prepare("BEGIN IMMEDIATE").run();
      const results = await settleAll([1, 2, 3].map((n) => store.commitIssuance(commitOf(n, { token: `bootstrap:t${n}` }))));
      for (const r of results) {
        expect(r).toBeInstanceOf(CaError);
        expect((r as CaError).code).toBe("unavailable");
        expect(((r as CaError).cause as { code?: string }).code).toBe("SQLITE_BUSY");
      }
      other.prepare("ROLLBACK").run();
    } finally {
      other.close();
    }
    expect(onDisk()).toEqual({ serials: [], tokens: [], idem: [] });
    expect(await settleAll([1, 2, 3].map((n) => store.commitIssuance(commitOf(n, { token: `bootstrap:t${n}` }))))).toEqual(["committed", "committed", "committed"]);
  });

  it("on a full disk refuses with unavailable, spends no token of a refused request, and recovers", async () => {
    // PRAGMA max_page_count makes SQLite answer SQLITE_FULL exactly as a full file system would.
    const pages = store.db.pragma("page_count", { simple: true }) as number;
    store.db.pragma(`max_page_count = ${pages + 2}`);
    const batch = Array.from({ length: 8 }, (_, i) => commitOf(i, { token: `bootstrap:t${i}`, derOctets: 16_384 }));
    const results = await settleAll(batch.map((c) => store.commitIssuance(c)));
    const refused = results.flatMap((r, i) => (r === "committed" ? [] : [i]));
    expect(refused.length).toBeGreaterThan(0);
    for (const i of refused) {
      expect(results[i]).toBeInstanceOf(CaError);
      expect((results[i] as CaError).code).toBe("unavailable");
    }
    // What was answered "committed" is on disk with its token; nothing refused left a trace.
    const committed = results.flatMap((r, i) => (r === "committed" ? [i] : []));
    const disk = onDisk();
    expect(disk.serials).toEqual(committed.map(serialOf));
    expect(disk.tokens).toEqual(committed.map((i) => `bootstrap:t${i}`).sort());

    store.db.pragma("max_page_count = 1073741823");
    expect(await settleAll(refused.map((i) => store.commitIssuance(batch[i]!)))).toEqual(refused.map(() => "committed"));
    expect(onDisk().serials).toHaveLength(8);
  });

  it("writes commits still queued when the store closes", async () => {
    const pending = [1, 2].map((n) => store.commitIssuance(commitOf(n, { token: `bootstrap:t${n}` })));
    store.close();
    expect(await settleAll(pending)).toEqual(["committed", "committed"]);
    expect(onDisk().serials).toEqual([1, 2].map(serialOf));
  });
});
