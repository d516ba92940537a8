/**
 * Issue 17: the CRL, CRL-catalog, OCSP-answer, rate-limit and renewal-window stores and the CRL
 * leases, each scenario run against both adapters: SQLite (the real SqliteStore on a temp file)
 * and PostgreSQL (a real cluster, test/harness/postgres.ts; a fresh database per test). The
 * expected values are computed from the seeded data, never read back from one adapter, so both
 * adapters agreeing with them means they agree with each other byte for byte.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { SerialHex } from "../src/core/serial.js";
import type { RevocationReason } from "../src/core/revocation-reason.js";
import type {
  BucketKey,
  CertificateRecord,
  CrlLeases,
  CrlScope,
  CrlStore,
  IssuerRecord,
  OcspAnswerStore,
  RateLimitStore,
  RenewalInfoLookup,
  RenewalWindowStore,
  RevokedRow,
  StoredBucket,
  StoredCrl,
  StoredOcspAnswer,
  CrlCatalog,
} from "../src/storage/ports.js";
import { packRevokedRows } from "../src/storage/revoked-page.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";
import { SqliteCrlCatalog } from "../src/storage/sqlite/sqlite-crl-catalog.js";
import { SqliteOcspStore } from "../src/storage/sqlite/sqlite-ocsp-store.js";
import { SqliteRateLimits } from "../src/storage/sqlite/sqlite-rate-limits.js";
import { SqliteRenewalWindows } from "../src/storage/sqlite/sqlite-renewal-windows.js";
import { SqliteCrlLeases } from "../src/storage/sqlite/sqlite-crl-leases.js";
import { openPgPool } from "../src/storage/postgres/pg-pool.js";
import { migratePostgres } from "../src/storage/postgres/pg-schema.js";
import { PgCrlStore } from "../src/storage/postgres/pg-crl-store.js";
import { PgCrlCatalog } from "../src/storage/postgres/pg-crl-catalog.js";
import { PgOcspStore } from "../src/storage/postgres/pg-ocsp-store.js";
import { PgRateLimits } from "../src/storage/postgres/pg-rate-limits.js";
import { PgRenewalWindows } from "../src/storage/postgres/pg-renewal-windows.js";
import { PgCrlLeases } from "../src/storage/postgres/pg-crl-leases.js";
import { SqliteRevocationPorts } from "../src/storage/sqlite/sqlite-revocation-ports.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";

/** What a scenario creates rows with: SqliteStore's own methods, or plain SQL on PostgreSQL. */
interface Seed {
  issuer(keyId: string): Promise<void>;
  certificates(certs: CertificateRecord[]): Promise<void>;
  /** Revokes each, in order, as the revoke service does (status flip and revocation log). */
  revoke(revocations: Array<[serial: SerialHex, at: Date, reason: number]>): Promise<void>;
}

/** One adapter's stores; `*2` are a second process's (another connection / pool) on the same database. */
interface Adapter {
  crl: CrlStore;
  catalog: CrlCatalog;
  ocsp: OcspAnswerStore;
  rates: RateLimitStore;
  rates2: RateLimitStore;
  renewal: RenewalWindowStore & RenewalInfoLookup;
  leases: CrlLeases;
  leases2: CrlLeases;
  seed: Seed;
  /** crl_chunks rows of a scope: what a refused or replaced write must not leave behind. */
  chunks(scope: CrlScope): Promise<number>;
  close(): Promise<void>;
}

/**
 * The async form over a synchronous SQLite class: each method resolves with what the class
 * returns. A stand-in for the SQLite facades the async ports will have (issue 17).
 */

let server: TestPostgres;
let dir: string;
let databases = 0;

beforeAll(async () => {
  server = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), "fleetca-pg-crl-"));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function sqliteAdapter(): Promise<Adapter> {
  const path = join(dir, `ca-${++databases}.db`);
  const store = new SqliteStore(path);
  const other = new SqliteStore(path);
  const renewal = new SqliteRenewalWindows(store.db);
  return {
    crl: new SqliteRevocationPorts(store),
    catalog: new SqliteCrlCatalog(store.db),
    ocsp: new SqliteOcspStore(store.db),
    rates: new SqliteRateLimits(store.db),
    rates2: new SqliteRateLimits(other.db),
    renewal: {
      recordRenewalOverride: (o, now) => renewal.recordRenewalOverride(o, now),
      // SqliteRenewalWindows reads synchronously (SqliteRequestPorts is its asynchronous face).
      renewalSubject: async (serial) => renewal.renewalSubject(serial),
    },
    leases: new SqliteCrlLeases(store.db),
    leases2: new SqliteCrlLeases(other.db),
    seed: {
      async issuer(keyId) {
        store.addIssuer(issuerRecord(keyId));
      },
      async certificates(certs) {
        const outcomes = await Promise.all(certs.map((certificate) => store.commitIssuance({ certificate })));
        expect(new Set(outcomes)).toEqual(new Set(["committed"]));
      },
      async revoke(revocations) {
        // One transaction around the store's own revocations (each becomes a savepoint): one fsync.
        store.db.transaction(() => {
          for (const [serial, at, reason] of revocations) expect(store.revokeCertificate(serial, at, reason as RevocationReason).outcome).toBe("revoked");
        })();
      },
    },
    chunks: async (scope) =>
      store.db.prepare("SELECT count(*) FROM crl_chunks WHERE issuer_key_id = ? AND shard = ?").pluck().get(scope.issuerKeyId, scope.shard ?? -1) as number,
    async close() {
      other.close();
      store.close();
    },
  };
}

async function postgresAdapter(): Promise<Adapter> {
  const url = await server.createDatabase(`crl${++databases}`);
  const pool = openPgPool({ url, pool: 8 });
  const pool2 = openPgPool({ url, pool: 8 });
  const client = await pool.connect();
  try {
    await migratePostgres(client);
  } finally {
    client.release();
  }
  return {
    crl: new PgCrlStore(pool),
    catalog: new PgCrlCatalog(pool),
    ocsp: new PgOcspStore(pool),
    rates: new PgRateLimits(pool),
    rates2: new PgRateLimits(pool2),
    renewal: new PgRenewalWindows(pool),
    leases: new PgCrlLeases(pool),
    leases2: new PgCrlLeases(pool2),
    seed: pgSeed(pool),
    chunks: async (scope) =>
      (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM crl_chunks WHERE issuer_key_id = $1 AND shard = $2", [scope.issuerKeyId, scope.shard ?? -1])).rows[0]!.n,
    async close() {
      await Promise.all([pool.end(), pool2.end()]);
    },
  };
}

function pgSeed(pool: pg.Pool): Seed {
  return {
    async issuer(keyId) {
      const r = issuerRecord(keyId);
      await pool.query("INSERT INTO issuers (key_id, role, key_name, der, not_before, not_after, status, created_at, activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", [
        r.keyId,
        r.role,
        r.keyName,
        Buffer.from(r.der),
        r.notBefore.getTime(),
        r.notAfter.getTime(),
        r.status,
        r.createdAt.getTime(),
        r.activatedAt?.getTime() ?? null,
      ]);
    },
    async certificates(certs) {
      const col = <T>(f: (c: CertificateRecord) => T): T[] => certs.map(f);
      await pool.query(
        `INSERT INTO certificates (serial, issuer_key_id, sans, not_before, not_after, der, provisioner, status, created_at, crl_shard, lineage, attested_at)
         SELECT s, i, '{"dns":[],"ip":[],"uri":[]}', nb, na, '\\x00', p, 'valid', ca, sh, s, ca
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[]) AS t(s, i, nb, na, p, ca, sh)`,
        [
          col((c) => c.serial),
          col((c) => c.issuerKeyId),
          col((c) => c.notBefore.getTime()),
          col((c) => c.notAfter.getTime()),
          col((c) => c.provisioner),
          col((c) => c.createdAt.getTime()),
          col((c) => c.crlShard),
        ],
      );
    },
    async revoke(revocations) {
      // Each as a revocation does (the conditional flip, then its log row), all in one
      // transaction as the SQLite seed's: one commit for thousands.
      const c = await pool.connect();
      try {
        await c.query("BEGIN");
        for (const [serial, at, reason] of revocations) {
          const r = await c.query("UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3 WHERE serial = $1 AND status = 'valid'", [serial, at.getTime(), reason]);
          expect(r.rowCount).toBe(1);
          await c.query("INSERT INTO revocation_log (serial, issuer_key_id, revoked_at, reason) SELECT serial, issuer_key_id, revoked_at, revocation_reason FROM certificates WHERE serial = $1", [serial]);
        }
        await c.query("COMMIT");
      } catch (e) {
        await c.query("ROLLBACK");
        throw e;
      } finally {
        c.release();
      }
    },
  };
}

const T0 = new Date("2026-06-01T00:00:00Z");
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ISSUER = "ab".repeat(20);

function issuerRecord(keyId: string): IssuerRecord {
  return {
    keyId,
    role: "intermediate",
    keyName: `k-${keyId.slice(0, 8)}`,
    parentKeyId: null,
    der: Uint8Array.of(0x30, 0x00),
    notBefore: new Date(T0.getTime() - 365 * DAY),
    notAfter: new Date(T0.getTime() + 365 * DAY),
    status: "active",
    createdAt: new Date(T0.getTime() - 365 * DAY),
    revokedAt: null,
    revocationReason: null,
    activatedAt: new Date(T0.getTime() - 365 * DAY),
  };
}

function certificate(serial: string, o: { notAfter?: Date; shard?: number | null; createdAt?: Date; provisioner?: string; issuer?: string } = {}): CertificateRecord {
  const createdAt = o.createdAt ?? new Date(T0.getTime() - DAY);
  return {
    serial: serial as SerialHex,
    issuerKeyId: o.issuer ?? ISSUER,
    sans: { dns: [], ip: [], uri: [] },
    subjectCommonName: null,
    notBefore: createdAt,
    notAfter: o.notAfter ?? new Date(T0.getTime() + 30 * DAY),
    der: Uint8Array.of(0),
    provisioner: o.provisioner ?? "ops",
    tokenId: null,
    status: "valid",
    revokedAt: null,
    revocationReason: null,
    createdAt,
    renewedFrom: null,
    crlShard: o.shard ?? null,
  };
}

/** A distinct lower-case hex serial of 1–20 octets (even length), mixing lengths so byte order is not length order. */
function serials(n: number): string[] {
  const seen = new Set<string>();
  while (seen.size < n) seen.add(randomBytes(1 + (seen.size % 20)).toString("hex"));
  return [...seen];
}

function storedCrl(scope: CrlScope, crlNumber: number, der: Uint8Array, seq = 0): StoredCrl {
  return { ...scope, crlNumber, thisUpdate: T0, nextUpdate: new Date(T0.getTime() + DAY), entries: 0, revocationSeq: seq, der };
}

const FULL: CrlScope = { issuerKeyId: ISSUER, shard: null };

describe.each([
  ["SQLite", sqliteAdapter],
  ["PostgreSQL", postgresAdapter],
])("%s", (_name, open) => {
  let a: Adapter;
  afterEach(async () => {
    await a?.close();
  });

  it("pages revoked certificates in byte order, packed as packRevokedRows packs them, and counts them", async () => {
    a = await open();
    await a.seed.issuer(ISSUER);
    const all = serials(3000);
    const expired = new Set(all.slice(0, 200));
    const valid = new Set(all.slice(200, 400));
    const shardOf = (i: number): number | null => (i % 3 === 0 ? null : i % 3);
    await a.seed.certificates(
      all.map((s, i) => certificate(s, { shard: shardOf(i), notAfter: expired.has(s) ? new Date(T0.getTime() - HOUR) : new Date(T0.getTime() + 30 * DAY) })),
    );
    const revoked: RevokedRow[] = [];
    const revocations: Array<[SerialHex, Date, number]> = [];
    all.forEach((s, i) => {
      if (valid.has(s)) return;
      // Times with milliseconds (floored to seconds in the record), a few before 1970; reason 0–10 but 7, or none.
      const at = T0.getTime() - 1_000_000 - i * 1_237 - (i % 50 === 0 ? T0.getTime() + 5_500 : 0);
      const reason = i % 11 === 7 ? 0 : i % 11;
      revocations.push([s as SerialHex, new Date(at), reason]);
      if (!expired.has(s)) revoked.push([s, at, reason]);
    });
    await a.seed.revoke(revocations);

    for (const scope of [FULL, { issuerKeyId: ISSUER, shard: 1 }, { issuerKeyId: ISSUER, shard: 2 }] as CrlScope[]) {
      const expected = revoked.filter(([s]) => scope.shard === null || shardOf(all.indexOf(s)) === scope.shard).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
      expect(await a.crl.countRevoked(scope, T0)).toBe(expected.length);
      let after: SerialHex | null = null;
      let at = 0;
      for (;;) {
        const page = await a.crl.revokedPage(scope, T0, after, 700);
        const want = packRevokedRows(expected.slice(at, at + 700));
        expect({ count: page.count, lastSerial: page.lastSerial }).toEqual({ count: want.count, lastSerial: want.lastSerial });
        expect(Buffer.from(page.bytes).equals(Buffer.from(want.bytes))).toBe(true);
        if (page.count === 0) break;
        after = page.lastSerial;
        at += page.count;
      }
      expect(at).toBe(expected.length);
    }
    // The revocation log: every revocation, and the scopes it touched.
    expect(await a.crl.latestRevocationSeq()).toBe(revocations.length);
    expect(new Set(await a.crl.shardsRevokedAfter(ISSUER, 0))).toEqual(new Set([null, 1, 2]));
    expect(await a.crl.shardsRevokedAfter(ISSUER, revocations.length)).toEqual([]);
  }, 120_000);

  it("keeps CRL numbers going up, registers partitions, and summarizes what is stored", async () => {
    a = await open();
    await a.seed.issuer(ISSUER);
    const scope = { issuerKeyId: ISSUER, shard: 3 };
    expect(await a.crl.getCrl(scope)).toBeNull();
    expect(await a.crl.crlSummaryOf(scope)).toBeNull();
    expect(await a.crl.saveCrl(storedCrl(scope, 5, Uint8Array.of(5, 5)))).toBe(true);
    expect(await a.crl.saveCrl(storedCrl(scope, 5, Uint8Array.of(9)))).toBe(false);
    expect(await a.crl.saveCrl(storedCrl(scope, 4, Uint8Array.of(4)))).toBe(false);
    expect(await a.crl.saveCrl({ ...storedCrl(scope, 6, Uint8Array.of(6, 6, 6)), entries: 12 })).toBe(true);
    expect(await a.crl.getCrl(scope)).toEqual({ ...storedCrl(scope, 6, Uint8Array.of(6, 6, 6)), entries: 12 });
    expect(await a.crl.crlSummaryOf(scope)).toEqual({ crlNumber: 6, entries: 12 });
    // The full CRL is its own scope, numbered on its own.
    expect(await a.crl.saveCrl(storedCrl(FULL, 1, Uint8Array.of(1)))).toBe(true);
    expect((await a.crl.getCrl(FULL))!.crlNumber).toBe(1);

    await a.crl.registerCrlShards(ISSUER, [2, 0, 1]);
    await a.crl.registerCrlShards(ISSUER, [1, 3]);
    expect(await a.crl.crlShards(ISSUER)).toEqual([0, 1, 2, 3]);
    expect((await a.catalog.registeredShards()).sort((x, y) => x.shard - y.shard)).toEqual([0, 1, 2, 3].map((shard) => ({ issuerKeyId: ISSUER, shard })));
    const heads = (await a.catalog.storedCrls()).sort((x, y) => (x.shard ?? -1) - (y.shard ?? -1));
    expect(heads.map((h) => [h.shard, h.crlNumber, h.derLength])).toEqual([
      [null, 1, 1],
      [3, 6, 3],
    ]);
  });

  it("stores a CRL of several MB and reads it back whole; a snapshot keeps the old CRL's bytes while a newer one is saved", async () => {
    a = await open();
    await a.seed.issuer(ISSUER);
    const old = randomBytes(5 * 1024 * 1024 + 12_345);
    const newer = randomBytes(3 * 1024 * 1024 + 7);
    expect(await a.crl.saveCrl(storedCrl(FULL, 10, old))).toBe(true);
    const read = await a.catalog.readCrl(FULL);
    expect(read!.crlNumber).toBe(10);
    expect(Buffer.from(read!.der).equals(old)).toBe(true);
    expect(Buffer.from((await a.crl.getCrl(FULL))!.der).equals(old)).toBe(true);

    const snapshot = await a.catalog.openSnapshot();
    try {
      const head = (await snapshot.head(FULL))!;
      expect({ crlNumber: head.crlNumber, derLength: head.derLength }).toEqual({ crlNumber: 10, derLength: old.length });
      const reader = snapshot.reader(head);
      const chunks: Uint8Array[] = [(await reader.next())!];
      // The newer CRL is saved (and the old chunks swept) while the snapshot reads on.
      const saving = a.crl.saveCrl(storedCrl(FULL, 11, newer));
      for (let i = 0; i < 5; i++) chunks.push((await reader.next())!);
      expect(await saving).toBe(true);
      expect(Buffer.from((await a.catalog.readCrl(FULL))!.der).equals(newer)).toBe(true);
      // Still the old CRL's head and bytes, to the end: never a mix.
      expect((await snapshot.head(FULL))!.crlNumber).toBe(10);
      for (let c = await reader.next(); c !== null; c = await reader.next()) chunks.push(c);
      expect(Buffer.concat(chunks).equals(old)).toBe(true);
      // The old CRL's chunks are gone from the table (swept): the snapshot read them as of its start.
      expect(await a.chunks(FULL)).toBe(Math.ceil(newer.length / (128 * 1024)));
    } finally {
      await snapshot.close();
      await snapshot.close();
    }
    const after = await a.catalog.openSnapshot();
    try {
      const head = (await after.head(FULL))!;
      expect(head.crlNumber).toBe(11);
      const reader = after.reader(head);
      await after.release();
      // After release, chunks are read by their write: this one is current, so all of it comes.
      const chunks: Uint8Array[] = [];
      for (let c = await reader.next(); c !== null; c = await reader.next()) chunks.push(c);
      expect(Buffer.concat(chunks).equals(newer)).toBe(true);
    } finally {
      await after.close();
    }
  }, 120_000);

  it("saves, reads, selects for pre-signing and expires OCSP answers", async () => {
    a = await open();
    await a.seed.issuer(ISSUER);
    const [fresh, due, missing, stale, expired] = ["0a", "0b", "0c", "0d", "0e"] as SerialHex[];
    await a.seed.certificates([
      certificate(fresh!),
      certificate(due!),
      certificate(missing!),
      certificate(stale!),
      certificate(expired!, { notAfter: new Date(T0.getTime() - HOUR) }),
    ]);
    await a.seed.revoke([[stale!, new Date(T0.getTime() - HOUR), 1]]);
    const answer = (serial: SerialHex, refreshAt: number, nextUpdate: number, der = Uint8Array.of(1, 2, 3)): StoredOcspAnswer => ({
      issuerKeyId: ISSUER,
      serial,
      status: "valid",
      der,
      thisUpdate: new Date(T0.getTime() - HOUR),
      nextUpdate: new Date(nextUpdate),
      refreshAt: new Date(refreshAt),
    });
    await a.ocsp.saveOcspAnswers([]);
    await a.ocsp.saveOcspAnswers([
      answer(fresh!, T0.getTime() + HOUR, T0.getTime() + DAY, Uint8Array.of(9)),
      answer(fresh!, T0.getTime() + HOUR, T0.getTime() + DAY),
      answer(due!, T0.getTime() - 1, T0.getTime() + DAY),
      answer(stale!, T0.getTime() + HOUR, T0.getTime() + DAY),
      answer(expired!, T0.getTime() - DAY, T0.getTime() - 1),
    ]);
    // The last answer for a certificate in a batch is the one kept.
    expect(await a.ocsp.getOcspAnswer(ISSUER, fresh!)).toEqual(answer(fresh!, T0.getTime() + HOUR, T0.getTime() + DAY));
    expect(await a.ocsp.getOcspAnswer(ISSUER, missing!)).toBeNull();

    const candidates = await a.ocsp.certificatesToPresign(ISSUER, T0, "", 10);
    expect(candidates).toEqual([
      { serial: due, status: "valid", revokedAt: null, reason: null },
      { serial: missing, status: "valid", revokedAt: null, reason: null },
      { serial: stale, status: "revoked", revokedAt: new Date(T0.getTime() - HOUR), reason: 1 },
    ]);
    expect(await a.ocsp.certificatesToPresign(ISSUER, T0, due!, 1)).toEqual([candidates[1]]);
    expect(await a.ocsp.deleteExpiredOcspAnswers(T0)).toBe(1);
    expect(await a.ocsp.getOcspAnswer(ISSUER, expired!)).toBeNull();
    expect(await a.ocsp.deleteExpiredOcspAnswers(T0)).toBe(0);
  });

  it("merges one bucket from two processes at once without losing an update", async () => {
    a = await open();
    const bucket: BucketKey = { limit: "issuance", key: "ops" };
    const other: BucketKey = { limit: "issuance", key: "web" };
    const n = 24;
    // Each merge takes one token from what is stored (a full bucket holds 100).
    const take = (_b: BucketKey, stored: StoredBucket | null): StoredBucket => ({
      tokens: (stored?.tokens ?? 100) - 1,
      at: T0,
      fullAt: new Date(T0.getTime() + HOUR),
    });
    await Promise.all(
      Array.from({ length: n }, (_, i) => (i % 2 === 0 ? a.rates : a.rates2).mergeBuckets(i % 3 === 0 ? [bucket, other] : [other, bucket], take, T0)),
    );
    expect(await a.rates.readBucket(bucket)).toEqual({ tokens: 100 - n, at: T0, fullAt: new Date(T0.getTime() + HOUR) });
    expect(await a.rates2.readBucket(other)).toEqual({ tokens: 100 - n, at: T0, fullAt: new Date(T0.getTime() + HOUR) });
    expect((await a.rates.bucketsMergedSince(new Date(0))).sort((x, y) => (x.key < y.key ? -1 : 1))).toEqual([
      { ...bucket, fullAt: new Date(T0.getTime() + HOUR) },
      { ...other, fullAt: new Date(T0.getTime() + HOUR) },
    ]);
    expect(await a.rates.bucketsMergedSince(new Date(T0.getTime() + 1))).toEqual([]);

    // A merge that makes a bucket full deletes its row; rows full before `now` are pruned.
    await a.rates.mergeBuckets([bucket], () => null, T0);
    expect(await a.rates.readBucket(bucket)).toBeNull();
    await a.rates2.mergeBuckets([], take, new Date(T0.getTime() + 2 * HOUR));
    expect(await a.rates.readBucket(other)).toBeNull();
    // A missing bucket merged to "full" leaves no row.
    await a.rates.mergeBuckets([{ limit: "x", key: "y" }], () => null, T0);
    expect(await a.rates.bucketsMergedSince(new Date(0))).toEqual([]);
  });

  it("records renewal-window overrides and applies the one ending first to certificates issued before it", async () => {
    a = await open();
    await a.seed.issuer(ISSUER);
    const issued = new Date(T0.getTime() - DAY);
    await a.seed.certificates([
      certificate("01", { createdAt: issued, provisioner: "ops" }),
      certificate("02", { createdAt: issued, provisioner: "web" }),
      certificate("03", { createdAt: issued, provisioner: "ops", notAfter: new Date(T0.getTime() - HOUR) }),
      certificate("04", { createdAt: new Date(T0.getTime() + HOUR), provisioner: "ops" }),
    ]);
    await a.seed.revoke([["02" as SerialHex, T0, 1]]);
    const window = (kind: "issuer" | "provisioner" | "serial", value: string, endHours: number, createdAt = T0) => ({
      kind,
      value,
      start: new Date(T0.getTime() + HOUR),
      end: new Date(T0.getTime() + endHours * HOUR),
      createdAt,
    });
    expect(await a.renewal.recordRenewalOverride(window("issuer", ISSUER, 48), T0)).toEqual({ matched: 1 });
    expect(await a.renewal.recordRenewalOverride(window("provisioner", "ops", 24), T0)).toEqual({ matched: 1 });
    expect(await a.renewal.recordRenewalOverride(window("serial", "02", 12), T0)).toEqual({ matched: 0 });
    expect(await a.renewal.recordRenewalOverride(window("serial", "01", 6, new Date(issued.getTime() - 1)), T0)).toEqual({ matched: 1 });

    const one = await a.renewal.renewalSubject("01" as SerialHex);
    expect(one).toEqual({
      serial: "01",
      issuerKeyId: ISSUER,
      provisioner: "ops",
      notBefore: issued,
      notAfter: new Date(T0.getTime() + 30 * DAY),
      status: "valid",
      createdAt: issued,
      // The serial override ends first but was recorded before the certificate: it does not apply.
      override: window("provisioner", "ops", 24),
    });
    expect((await a.renewal.renewalSubject("02" as SerialHex))!.override).toEqual(window("serial", "02", 12));
    expect((await a.renewal.renewalSubject("02" as SerialHex))!.status).toBe("revoked");
    // Issued after every override: none applies.
    expect((await a.renewal.renewalSubject("04" as SerialHex))!.override).toBeNull();
    expect(await a.renewal.renewalSubject("ff" as SerialHex)).toBeNull();
  });

  it("leases a CRL scope to one holder at a time, hands it over on expiry, and fences the old holder's saves", async () => {
    a = await open();
    await a.seed.issuer(ISSUER);
    const scope = { issuerKeyId: ISSUER, shard: 0 };
    const until = (ms: number): Date => new Date(T0.getTime() + ms);

    // Two replicas race for a free scope: exactly one gets it.
    const [first, second] = await Promise.all([a.leases.acquire(scope, "a", until(60_000), T0), a.leases2.acquire(scope, "b", until(60_000), T0)]);
    expect([first, second].filter(Boolean)).toHaveLength(1);
    const [winner, loser, wl, ll] = first ? (["a", "b", a.leases, a.leases2] as const) : (["b", "a", a.leases2, a.leases] as const);
    // The holder extends its own lease; the other is refused while it runs.
    expect(await wl.acquire(scope, winner, until(90_000), until(30_000))).toBe(true);
    expect(await ll.acquire(scope, loser, until(120_000), until(60_000))).toBe(false);
    // The full CRL is another scope, free.
    expect(await ll.acquire(FULL, loser, until(60_000), T0)).toBe(true);

    expect(await wl.saveCrlAsHolder(storedCrl(scope, 1, Uint8Array.of(1)), winner, until(40_000))).toBe(true);
    // The loser, not holding the lease, cannot store, even a higher number.
    expect(await ll.saveCrlAsHolder(storedCrl(scope, 9, Uint8Array.of(9)), loser, until(40_000))).toBe(false);
    // The holder cannot go back or repeat a number (the CRL number is the fencing token).
    expect(await wl.saveCrlAsHolder(storedCrl(scope, 1, Uint8Array.of(7)), winner, until(40_000))).toBe(false);
    expect(await wl.saveCrlAsHolder(storedCrl(scope, 0, Uint8Array.of(0)), winner, until(40_000))).toBe(false);

    // The winner's lease (until 90 s) expires; the other takes it over.
    expect(await ll.acquire(scope, loser, until(150_000), until(90_000))).toBe(true);
    // The old holder wakes up with a CRL it built before: refused, though its number is higher.
    expect(await wl.saveCrlAsHolder(storedCrl(scope, 2, Uint8Array.of(2)), winner, until(85_000))).toBe(false);
    expect(await wl.acquire(scope, winner, until(200_000), until(100_000))).toBe(false);
    expect(await ll.saveCrlAsHolder(storedCrl(scope, 3, Uint8Array.of(3, 3)), loser, until(100_000))).toBe(true);
    // Its own lease expired, a holder cannot save either.
    expect(await ll.saveCrlAsHolder(storedCrl(scope, 4, Uint8Array.of(4)), loser, until(150_000))).toBe(false);
    expect(await a.crl.getCrl(scope)).toEqual(storedCrl(scope, 3, Uint8Array.of(3, 3)));
    // Refused writes left no chunks behind: only the stored CRL's one.
    expect(await a.chunks(scope)).toBe(1);

    // Release gives the lease up (only by its holder), and another takes it at once.
    await wl.release(scope, winner);
    expect(await wl.acquire(scope, winner, until(200_000), until(110_000))).toBe(false);
    await ll.release(scope, loser);
    expect(await wl.acquire(scope, winner, until(200_000), until(110_000))).toBe(true);
    expect(await wl.saveCrlAsHolder(storedCrl(scope, 4, Uint8Array.of(4)), winner, until(120_000))).toBe(true);
    expect((await a.crl.crlSummaryOf(scope))!.crlNumber).toBe(4);
  });
});

describe("PostgreSQL: a CRL snapshot whose connection the server ends", () => {
  it("fails its next read and closes cleanly; the process does not die of an unheard 'error' event", async () => {
    const url = await server.createDatabase(`crl${++databases}`);
    const pool = openPgPool({ url, pool: 4 });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const client = await pool.connect();
      await migratePostgres(client);
      client.release();
      await pgSeed(pool).issuer(ISSUER);
      const crls = new PgCrlStore(pool);
      expect(await crls.saveCrl(storedCrl(FULL, 1, randomBytes(600_000)))).toBe(true);
      const snapshot = await new PgCrlCatalog(pool).openSnapshot();
      const reader = snapshot.reader((await snapshot.head(FULL))!);
      expect(await reader.next()).not.toBeNull();
      // As a failover or an operator's pg_terminate_backend would, while a slow client is mid-CRL.
      const killed = await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'");
      expect(killed.rowCount).toBe(1);
      await new Promise((done) => setTimeout(done, 300));
      await expect(reader.next()).rejects.toThrow();
      await snapshot.close();
      // The pool dropped the dead connection: the next snapshot reads the whole CRL.
      const again = await new PgCrlCatalog(pool).openSnapshot();
      try {
        const r = again.reader((await again.head(FULL))!);
        let n = 0;
        for (let c = await r.next(); c !== null; c = await r.next()) n += c.length;
        expect(n).toBe(600_000);
      } finally {
        await again.close();
      }
    } finally {
      await admin.end();
      await pool.end();
    }
  });
});
