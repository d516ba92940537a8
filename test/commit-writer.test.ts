import Database from "better-sqlite3";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CaError } from "../src/core/errors.js";
import type { SerialHex } from "../src/core/serial.js";
import type { CommitOutcome, IssuanceCommit } from "../src/storage/ports.js";
import type { BatchReport } from "../src/storage/sqlite/issuance-group-commit.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";

/**
 * The writer thread (commit-writer.ts): the daemon's issuance writes run on a worker thread with
 * its own connection. The thread is the compiled one (`npm test` builds first): the same script
 * the daemon starts. What a caller gets must be exactly the inline group commit's answers
 * (test/issuance-group-commit.test.ts), and a resolved commit must be readable at once through
 * the caller's own connection.
 */
const WRITER = new URL("../dist/storage/sqlite/commit-writer-thread.js", import.meta.url);
const ISSUER = "bb".repeat(20);
const DAY = 86_400_000;

const serialOf = (n: number) => `7e${n.toString(16).padStart(30, "0")}` as SerialHex;

function commitOf(n: number, opts: { token?: string; idem?: string; serial?: SerialHex; issuer?: string } = {}): IssuanceCommit {
  const now = new Date();
  const serial = opts.serial ?? serialOf(n);
  return {
    certificate: {
      serial, issuerKeyId: opts.issuer ?? ISSUER, sans: { dns: [`host-${n}.internal`], ip: [], uri: [] }, subjectCommonName: null,
      notBefore: now, notAfter: new Date(now.getTime() + DAY), der: Buffer.alloc(300, n & 0xff), provisioner: "bootstrap",
      tokenId: opts.token ?? null, status: "valid", revokedAt: null, revocationReason: null, createdAt: now, renewedFrom: null, crlShard: null,
    },
    ...(opts.token !== undefined && { tokenUse: { tokenId: opts.token, provisioner: "bootstrap", expiresAt: new Date(now.getTime() + 300_000) } }),
    ...(opts.idem !== undefined && { idempotency: { provisioner: "bootstrap", subject: "host", key: opts.idem, requestHash: `hash-${n}`, tokenId: opts.token ?? null, serial, expiresAt: new Date(now.getTime() + DAY) } }),
    audit: {
      kind: "issued", op: "sign", serial, issuer: opts.issuer ?? ISSUER, cert_sha256: "00".repeat(32), provisioner: "bootstrap",
      jti: opts.token ?? null, sans: [`host-${n}.internal`], not_after: new Date(now.getTime() + DAY).toISOString(),
    },
  };
}

const intentOf = (n: number) => ({
  kind: "intent" as const, op: "sign" as const, serial: serialOf(n), issuer: ISSUER, tbs_sha256: "11".repeat(32), provisioner: "bootstrap",
  jti: `bootstrap:t${n}`, sans: [`host-${n}.internal`], key_sha256: "22".repeat(32), client: "127.0.0.1", renewed_from: null,
});

const settle = <T,>(ps: Array<Promise<T>>) => Promise.all(ps.map((p) => p.catch((e: Error) => e)));

describe("the issuance writer thread", () => {
  let dir: string;
  let path: string;
  let store: SqliteStore;
  let batches: BatchReport[];

  beforeEach(() => {
    expect(existsSync(fileURLToPath(WRITER)), "dist/ is built (npm test runs the build first)").toBe(true);
    dir = mkdtempSync(join(tmpdir(), "fleetca-writer-"));
    path = join(dir, "fleetca.db");
    batches = [];
    store = new SqliteStore(path, { groupCommit: { maxBatch: 64, onBatch: (b) => batches.push(b) }, writerThread: WRITER });
    const now = new Date();
    store.addIssuer({
      keyId: ISSUER, role: "intermediate", keyName: "intermediate-1", parentKeyId: null, der: Uint8Array.of(0x30, 0),
      notBefore: now, notAfter: new Date(now.getTime() + 365 * DAY), status: "active", createdAt: now, revokedAt: null, revocationReason: null, activatedAt: now,
    });
  });
  afterEach(async () => {
    await store.flushCommits();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs the writes off this thread, and what one commit stored is readable here as soon as it resolves", async () => {
    expect(store.writesOffThread).toBe(true);
    expect(await store.recordIntent(intentOf(1), new Date())).toBe("committed");
    expect(await store.commitIssuance(commitOf(1, { token: "bootstrap:t1", idem: "k1" }))).toBe("committed");
    // This thread's own connection, no wait: the COMMIT happened before the answer was sent.
    expect(Buffer.from(store.getCertificate(serialOf(1))!.der)).toEqual(Buffer.alloc(300, 1));
    expect(store.isTokenUsed("bootstrap:t1")).toBe(true);
    expect(store.findIdempotency({ provisioner: "bootstrap", subject: "host" }, "k1", new Date())?.serial).toBe(serialOf(1));
    expect(store.audit.entries(0, 10).map((e) => [e.kind, e.serial])).toEqual([["intent", serialOf(1)], ["issued", serialOf(1)]]);
    // The log entries carry the index SQLite's order gave them, gapless from 0.
    expect(store.audit.size()).toBe(2);
  });

  it("gives each request of one loop turn its own outcome, in one batch", async () => {
    expect(await store.commitIssuance(commitOf(0, { token: "bootstrap:t0", idem: "key-0" }))).toBe("committed");
    batches.length = 0;
    const outcomes = await settle<CommitOutcome | "serial_collision">([
      store.commitIssuance(commitOf(1, { token: "bootstrap:t1" })),
      store.commitIssuance(commitOf(2, { token: "bootstrap:t0" })), // token spent before: replayed
      store.commitIssuance(commitOf(3, { token: "bootstrap:t3", serial: serialOf(0) })), // serial stored before
      store.commitIssuance(commitOf(4, { token: "bootstrap:t4", idem: "key-0" })), // idempotency key taken
      store.commitIssuance(commitOf(5, { token: "bootstrap:t5" })),
      store.commitIssuance(commitOf(6, { token: "bootstrap:t5" })), // the same token twice in one batch
      store.recordIntent(intentOf(0), new Date()), // serial 0 is stored: drawn again
      store.recordIntent(intentOf(7), new Date()),
    ]);
    expect(outcomes).toEqual(["committed", "replayed", "serial_collision", "idempotency_conflict", "committed", "replayed", "serial_collision", "committed"]);
    expect(batches).toEqual([expect.objectContaining({ size: 8, committed: true })]);
    const db = new Database(path, { readonly: true });
    try {
      expect(db.prepare("SELECT serial FROM certificates ORDER BY serial").pluck().all()).toEqual([serialOf(0), serialOf(1), serialOf(5)]);
      expect(db.prepare("SELECT token_id FROM used_tokens ORDER BY token_id").pluck().all()).toEqual(["bootstrap:t0", "bootstrap:t1", "bootstrap:t5"]);
      // Refused commits left no "issued" entry: the log holds the issued certificates and the one new intent.
      expect(db.prepare("SELECT kind, serial FROM audit_log ORDER BY idx").raw().all()).toEqual([
        ["issued", serialOf(0)], ["issued", serialOf(1)], ["issued", serialOf(5)], ["intent", serialOf(7)],
      ]);
    } finally {
      db.close();
    }
  });

  it("sends a bug back as the error it is, not as a 503, and keeps working", async () => {
    // A certificate naming an issuer the store does not have breaks a foreign key: a bug in the
    // caller, which must stay visible (a 500), unlike a storage fault (unavailable).
    const [bad, good] = await settle([store.commitIssuance(commitOf(1, { issuer: "cc".repeat(20) })), store.commitIssuance(commitOf(2, { token: "bootstrap:t2" }))]);
    expect(bad).toBeInstanceOf(Error);
    expect(bad).not.toBeInstanceOf(CaError);
    expect((bad as Error).message).toMatch(/FOREIGN KEY/);
    expect((bad as Error & { code?: string }).code).toMatch(/^SQLITE_CONSTRAINT/);
    expect(good).toBe("committed");
    expect(await store.commitIssuance(commitOf(3))).toBe("committed");
  });

  it("refuses the whole batch with unavailable while another connection holds the write lock past busy_timeout", async () => {
    const other = new Database(path);
    other.exec("BEGIN IMMEDIATE");
    try {
      const outcomes = await settle([store.commitIssuance(commitOf(1, { token: "bootstrap:t1" })), store.recordIntent(intentOf(2), new Date())]);
      for (const o of outcomes) expect(o).toEqual(expect.objectContaining({ code: "unavailable" }));
      expect(batches.at(-1)).toEqual(expect.objectContaining({ committed: false, cause: expect.objectContaining({ code: "SQLITE_BUSY" }) }));
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    expect(store.isTokenUsed("bootstrap:t1")).toBe(false);
    expect(await store.commitIssuance(commitOf(1, { token: "bootstrap:t1" }))).toBe("committed");
  }, 20_000);

  it("writes everything sent before flushCommits, and refuses (never hangs) what is still in flight at close", async () => {
    const burst = Array.from({ length: 200 }, (_, n) => store.commitIssuance(commitOf(n + 10, { token: `bootstrap:t${n + 10}` })));
    await store.flushCommits();
    expect(await Promise.all(burst)).toEqual(Array(200).fill("committed"));
    expect(batches.every((b) => b.size <= 64)).toBe(true);
    const late = store.commitIssuance(commitOf(999, { token: "bootstrap:t999" }));
    store.close();
    await expect(late).rejects.toMatchObject({ code: "unavailable" });
    store = new SqliteStore(path, { writerThread: WRITER });
    const db = new Database(path, { readonly: true });
    try {
      expect(db.prepare("SELECT count(*) FROM certificates").pluck().get()).toBe(200);
    } finally {
      db.close();
    }
  });
});
