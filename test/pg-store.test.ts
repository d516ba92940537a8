/**
 * Issue 17: the PostgreSQL adapter's core (storage/postgres/pg-store.ts) keeps the SQLite store's
 * meaning. Every scenario runs against both adapters: the real SqliteStore on a temp file (through
 * SqliteRequestPorts and, for ports still synchronous, a promisifying wrapper local to this file)
 * and PgStore on a real PostgreSQL cluster (test/harness/postgres.ts), a fresh database per test.
 * "Two replicas" are two stores opened on one database (for SQLite, two connections to one file).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { decodeEntry, encodeEntry, type AuditEntry, type AuditFields, type IntentFields, type IssuedFields } from "../src/audit/audit-entry.js";
import { leafHash } from "../src/audit/merkle.js";
import { CaError } from "../src/core/errors.js";
import type { RevocationReason } from "../src/core/revocation-reason.js";
import type { SerialHex } from "../src/core/serial.js";
import type {
  CertificateLookup,
  CertificateStatusLookup,
  CommitOutcome,
  HealthProbe,
  Housekeeping,
  InventoryStore,
  IssuanceCommit,
  IssuanceStore,
  IssuerLifecycleStore,
  IssuerRecord,
  IssuerStore,
  ProvisionerKeyStore,
  RevocationLog,
  RevocationStore,
} from "../src/storage/ports.js";
import { APPEND_LOCK } from "../src/storage/postgres/pg-append-lock.js";
import { appendAuditEntry } from "../src/storage/postgres/pg-audit-log.js";
import { PgIssuerLifecycle } from "../src/storage/postgres/pg-issuer-lifecycle.js";
import type { Promised } from "./harness/promised.js";
import { REVOCATION_CHANNEL } from "../src/storage/postgres/pg-revocation-notifications.js";
import { PgStore } from "../src/storage/postgres/pg-store.js";
import type { AuditKeyRecord, AuditQuery, StoredAuditEntry, StoredTreeHead } from "../src/storage/sqlite/sqlite-audit-log.js";
import { SqliteInventoryPorts } from "../src/storage/sqlite/sqlite-inventory-ports.js";
import { SqliteRequestPorts } from "../src/storage/sqlite/sqlite-request-ports.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";

/** The issuance log as the daemon uses it (SqliteAuditLog's methods), asynchronous. */
interface AsyncAuditLog {
  append(fields: AuditFields, at: Date): Promise<number>;
  serialTaken(serial: string): Promise<boolean>;
  size(): Promise<number>;
  leafHashes(from: number, to: number): Promise<Buffer[]>;
  entries(from: number, limit: number): Promise<StoredAuditEntry[]>;
  lastEntryOfKind(kind: string): Promise<Buffer | null>;
  entriesForSerial(serial: string): Promise<StoredAuditEntry[]>;
  query(q: AuditQuery, limit: number): Promise<StoredAuditEntry[]>;
  latestTreeHead(): Promise<StoredTreeHead | null>;
  treeHeads(): Promise<StoredTreeHead[]>;
  addTreeHead(h: StoredTreeHead): Promise<void>;
  auditKeys(): Promise<AuditKeyRecord[]>;
  addAuditKey(k: AuditKeyRecord): Promise<void>;
}

/** One "replica": every port this file exercises, in the asynchronous form. */
type Store = IssuanceStore &
  CertificateStatusLookup &
  CertificateLookup &
  RevocationStore &
  Promised<IssuerStore> &
  Promised<InventoryStore> &
  Promised<ProvisionerKeyStore> &
  Promised<RevocationLog> &
  Promised<Housekeeping> &
  Promised<HealthProbe> & {
    audit: AsyncAuditLog;
    lifecycle: Promised<IssuerLifecycleStore>;
    /** Rows in one table, read directly: what a port leaves behind that no port reads back. */
    countRows(table: "renewal_windows" | "cross_certificates"): Promise<number>;
  };

interface Backend {
  /** A fresh, empty, migrated database; open(0) and open(1) are two replicas on it. */
  fresh(): Promise<{ open(): Promise<Store> }>;
}

/** Promisifies the named synchronous methods of `target` (a throw becomes a rejection). */
function promisified<T extends object>(target: T, names: readonly string[]): Record<string, (...a: unknown[]) => Promise<unknown>> {
  const out: Record<string, (...a: unknown[]) => Promise<unknown>> = {};
  for (const n of names) {
    const f = (target as Record<string, (...a: unknown[]) => unknown>)[n]!;
    out[n] = async (...a: unknown[]) => f.apply(target, a);
  }
  return out;
}

const AUDIT_METHODS = ["append", "serialTaken", "size", "leafHashes", "entries", "lastEntryOfKind", "entriesForSerial", "query", "latestTreeHead", "treeHeads", "addTreeHead", "auditKeys", "addAuditKey"];

/** The SQLite store wrapped for the asynchronous ports (the issuer lifecycle: the real facade, SqliteInventoryPorts). */
function sqliteStore(store: SqliteStore): Store {
  const request = new SqliteRequestPorts(store);
  const inventory = new SqliteInventoryPorts(store);
  const sync = promisified(store, ["listIssuers", "addIssuer", "listCertificates", "getProvisionerKey", "addProvisionerKey", "latestRevocationSeq", "revocationsAfter", "pruneExpired", "ping"]);
  return {
    isTokenUsed: (t) => request.isTokenUsed(t),
    findIdempotency: (s, k, n) => request.findIdempotency(s, k, n),
    getCertificate: (s) => request.getCertificate(s),
    commitIssuance: (c) => request.commitIssuance(c),
    recordIntent: (i, at) => request.recordIntent(i, at),
    recordAudit: (f, at) => request.recordAudit(f, at),
    certificateStatus: (s) => request.certificateStatus(s),
    revokeCertificate: (s, at, r) => request.revokeCertificate(s, at, r),
    ...sync,
    audit: promisified(store.audit, AUDIT_METHODS) as unknown as AsyncAuditLog,
    lifecycle: inventory as Promised<IssuerLifecycleStore>,
    inventorySummary: (now: Date, internal: readonly string[]) => inventory.inventorySummary(now, internal),
    countRows: async (table: string) => store.db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number,
  } as Store;
}

function pgStore(store: PgStore): Store {
  const lifecycle = new PgIssuerLifecycle(store.pool);
  const countRows = async (table: string) => (await store.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;
  return Object.assign(store, { lifecycle, countRows }) as unknown as Store;
}

let server: TestPostgres;
let dir: string;
const closers: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  server = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), "fleetca-pg-store-"));
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let databases = 0;
const BACKENDS: Array<[string, Backend]> = [
  [
    "SQLite",
    {
      async fresh() {
        const path = join(dir, `ca-${++databases}.db`);
        return {
          async open() {
            const s = new SqliteStore(path);
            closers.push(() => s.close());
            return sqliteStore(s);
          },
        };
      },
    },
  ],
  [
    "PostgreSQL",
    {
      async fresh() {
        const url = await server.createDatabase(`t${++databases}`);
        return {
          async open() {
            const s = await PgStore.open({ url, pool: 4 });
            closers.push(() => s.close());
            return pgStore(s);
          },
        };
      },
    },
  ],
];

const ISSUER = "aa".repeat(20);
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

function serialOf(n: number): SerialHex {
  return `7f${n.toString(16).padStart(30, "0")}` as SerialHex;
}

function issuer(keyId = ISSUER, overrides: Partial<IssuerRecord> = {}): IssuerRecord {
  const at = new Date(T0 - DAY);
  return {
    keyId, role: "intermediate", keyName: `key-${keyId.slice(0, 4)}`, parentKeyId: null, der: Uint8Array.of(0x30, 3, 1, 2, 3),
    notBefore: at, notAfter: new Date(T0 + 365 * DAY), status: "active", createdAt: at, revokedAt: null, revocationReason: null, activatedAt: at,
    ...overrides,
  };
}

interface CommitOpts {
  token?: string;
  idem?: string;
  idemExpires?: number;
  serial?: SerialHex;
  at?: number;
  notAfter?: number;
  provisioner?: string;
  instance?: string;
  supersedes?: SerialHex;
  retireInstance?: boolean;
  supersedesPurpose?: boolean;
  audit?: boolean;
}

function issued(serial: string, provisioner = "bootstrap"): IssuedFields {
  return { kind: "issued", op: "sign", serial, issuer: ISSUER, cert_sha256: "00".repeat(32), provisioner, jti: null, sans: [`h-${serial.slice(-4)}.internal`], not_after: "2026-01-02T00:00:00Z" };
}

function commitOf(n: number, o: CommitOpts = {}): IssuanceCommit {
  const at = new Date(o.at ?? T0);
  const serial = o.serial ?? serialOf(n);
  const provisioner = o.provisioner ?? "bootstrap";
  return {
    certificate: {
      serial, issuerKeyId: ISSUER, sans: { dns: [`host-${n}.internal`], ip: [], uri: [] }, subjectCommonName: `host-${n}.internal`,
      notBefore: at, notAfter: new Date(o.notAfter ?? at.getTime() + DAY), der: new Uint8Array(64).fill(n & 0xff), provisioner,
      tokenId: o.token ?? null, status: "valid", revokedAt: null, revocationReason: null, createdAt: at,
      renewedFrom: o.supersedes ?? null, crlShard: n % 3 === 0 ? null : n % 3, instance: o.instance ?? null,
    },
    ...(o.token !== undefined && { tokenUse: { tokenId: o.token, provisioner, expiresAt: new Date(at.getTime() + 300_000) } }),
    ...(o.idem !== undefined && {
      idempotency: { provisioner, subject: "host", key: o.idem, requestHash: `hash-${n}`, tokenId: o.token ?? null, serial, expiresAt: new Date(o.idemExpires ?? at.getTime() + DAY) },
    }),
    ...(o.audit !== false && { audit: issued(serial, provisioner) }),
    ...(o.supersedes !== undefined && { supersedes: o.supersedes }),
    ...(o.retireInstance && { retireInstance: true }),
    ...(o.supersedesPurpose && { supersedesPurpose: true }),
  };
}

function intent(serial: string): IntentFields {
  return { kind: "intent", op: "sign", serial, issuer: ISSUER, tbs_sha256: "11".repeat(32), provisioner: "bootstrap", jti: "j", sans: ["a.internal"], key_sha256: "22".repeat(32), client: null, renewed_from: null };
}

async function kinds(s: Store): Promise<string[]> {
  return (await s.audit.entries(0, 1000)).map((e) => e.kind);
}

describe.each(BACKENDS)("storage core on %s", (_name, backend) => {
  async function one(): Promise<Store> {
    const db = await backend.fresh();
    const s = await db.open();
    await s.addIssuer(issuer());
    return s;
  }
  async function two(): Promise<[Store, Store]> {
    const db = await backend.fresh();
    const a = await db.open();
    await a.addIssuer(issuer());
    return [a, await db.open()];
  }

  it("commits an issuance with its token, idempotency key and issued entry, and reads them back", async () => {
    const s = await one();
    const c = commitOf(1, { token: "p:j1", idem: "k1" });
    expect(await s.commitIssuance(c)).toBe("committed");
    const got = await s.getCertificate(c.certificate.serial);
    expect(got).toMatchObject({ serial: c.certificate.serial, issuerKeyId: ISSUER, sans: c.certificate.sans, tokenId: "p:j1", status: "valid", crlShard: 1, lineage: c.certificate.serial, supersededBy: null, instance: null });
    expect(got!.attestedAt!.getTime()).toBe(T0);
    expect(Buffer.from(got!.der)).toEqual(Buffer.from(c.certificate.der));
    expect(await s.isTokenUsed("p:j1")).toBe(true);
    expect(await s.isTokenUsed("p:other")).toBe(false);
    expect(await s.findIdempotency({ provisioner: "bootstrap", subject: "host" }, "k1", new Date(T0))).toMatchObject({ serial: c.certificate.serial, requestHash: "hash-1", tokenId: "p:j1" });
    // Another scope never sees it; an expired one is as good as absent.
    expect(await s.findIdempotency({ provisioner: "bootstrap", subject: "other" }, "k1", new Date(T0))).toBeNull();
    expect(await s.findIdempotency({ provisioner: "bootstrap", subject: "host" }, "k1", new Date(T0 + 2 * DAY))).toBeNull();
    expect(await s.certificateStatus(c.certificate.serial)).toEqual({ issuerKeyId: ISSUER, status: "valid", revokedAt: null, revocationReason: null });
    expect(await s.certificateStatus(serialOf(99))).toBeNull();
    expect(await s.getCertificate(serialOf(99))).toBeNull();
    expect(await kinds(s)).toEqual(["issued"]);
  });

  it("returns every CommitOutcome in SQLite's situations, storing nothing of a refused commit", async () => {
    const s = await one();
    expect(await s.commitIssuance(commitOf(1, { token: "p:a", idem: "k" }))).toBe("committed");
    // The same token again: replayed, nothing of it stored.
    expect(await s.commitIssuance(commitOf(2, { token: "p:a" }))).toBe("replayed");
    expect(await s.getCertificate(serialOf(2))).toBeNull();
    // A stored serial: serial_collision, checked before the token (which stays unused).
    expect(await s.commitIssuance(commitOf(1, { token: "p:b" }))).toBe("serial_collision");
    expect(await s.isTokenUsed("p:b")).toBe(false);
    // A stored serial with a spent token: still serial_collision, not replayed.
    expect(await s.commitIssuance(commitOf(1, { token: "p:a" }))).toBe("serial_collision");
    // A live key of the scope: idempotency_conflict; the certificate and the token roll back.
    expect(await s.commitIssuance(commitOf(3, { token: "p:c", idem: "k" }))).toBe("idempotency_conflict");
    expect(await s.getCertificate(serialOf(3))).toBeNull();
    expect(await s.isTokenUsed("p:c")).toBe(false);
    // An expired key not pruned yet is taken over.
    expect(await s.commitIssuance(commitOf(4, { idem: "old", idemExpires: T0 + 1000 }))).toBe("committed");
    expect(await s.commitIssuance(commitOf(5, { idem: "old", at: T0 + 2000 }))).toBe("committed");
    expect((await s.findIdempotency({ provisioner: "bootstrap", subject: "host" }, "old", new Date(T0 + 2000)))!.serial).toBe(serialOf(5));
    // Renewals: the first supersedes its predecessor, a second of the same one is "superseded".
    expect(await s.commitIssuance(commitOf(6, { token: "p:r1", supersedes: serialOf(1) }))).toBe("committed");
    expect(await s.commitIssuance(commitOf(7, { token: "p:r2", supersedes: serialOf(1) }))).toBe("superseded");
    expect(await s.getCertificate(serialOf(7))).toBeNull();
    expect(await s.isTokenUsed("p:r2")).toBe(false);
    expect((await s.getCertificate(serialOf(1)))!.supersededBy).toBe(serialOf(6));
    // Only committed issuances left an "issued" entry, in commit order.
    const log = await s.audit.entries(0, 100);
    expect(log.map((e) => e.serial)).toEqual([serialOf(1), serialOf(4), serialOf(5), serialOf(6)]);
    expect(log.map((e) => e.idx)).toEqual([0, 1, 2, 3]);
  });

  it("recordIntent refuses a serial announced or stored before; recordAudit appends", async () => {
    const s = await one();
    expect(await s.recordIntent(intent(serialOf(1)), new Date(T0))).toBe("committed");
    expect(await s.recordIntent(intent(serialOf(1)), new Date(T0))).toBe("serial_collision");
    expect(await s.commitIssuance(commitOf(2, { audit: false }))).toBe("committed");
    expect(await s.recordIntent(intent(serialOf(2)), new Date(T0))).toBe("serial_collision");
    await s.recordAudit({ kind: "token_refused", provisioner: "bootstrap", reason: "expired", client: "10.0.0.1" }, new Date(T0 + 5));
    expect(await kinds(s)).toEqual(["intent", "token_refused"]);
    expect(await s.audit.serialTaken(serialOf(1))).toBe(true);
    expect(await s.audit.serialTaken(serialOf(2))).toBe(true);
    expect(await s.audit.serialTaken(serialOf(3))).toBe(false);
  });

  it("retireInstance revokes the instance's other live certificates (superseded, logged); supersedesPurpose supersedes the purpose's others", async () => {
    const s = await one();
    expect(await s.commitIssuance(commitOf(1, { instance: "i-1", provisioner: "aws" }))).toBe("committed");
    expect(await s.commitIssuance(commitOf(2, { instance: "i-1", provisioner: "aws" }))).toBe("committed");
    expect(await s.commitIssuance(commitOf(3, { instance: "i-2", provisioner: "aws" }))).toBe("committed");
    expect(await s.commitIssuance(commitOf(4, { instance: "i-1", provisioner: "aws", retireInstance: true, at: T0 + 10 }))).toBe("committed");
    for (const n of [1, 2]) expect(await s.certificateStatus(serialOf(n))).toEqual({ issuerKeyId: ISSUER, status: "revoked", revokedAt: new Date(T0 + 10), revocationReason: 4 });
    for (const n of [3, 4]) expect((await s.certificateStatus(serialOf(n)))!.status).toBe("valid");
    expect((await s.revocationsAfter(0, 10)).map((e) => [e.serial, e.reason])).toEqual([[serialOf(1), 4], [serialOf(2), 4]]);
    expect(await kinds(s)).toEqual(["issued", "issued", "issued", "revoked", "revoked", "issued"]);

    expect(await s.commitIssuance(commitOf(10, { provisioner: "internal" }))).toBe("committed");
    expect(await s.commitIssuance(commitOf(11, { provisioner: "internal", supersedesPurpose: true, at: T0 + 1 }))).toBe("committed");
    expect((await s.getCertificate(serialOf(10)))!.supersededBy).toBe(serialOf(11));
    expect((await s.getCertificate(serialOf(11)))!.supersededBy).toBeNull();
    expect((await s.getCertificate(serialOf(3)))!.supersededBy).toBeNull();
  });

  it("two replicas spending one token at once: exactly one committed, the other replayed (many rounds)", async () => {
    const [a, b] = await two();
    for (let round = 0; round < 40; round++) {
      const outcomes = await Promise.all([a.commitIssuance(commitOf(2 * round, { token: `p:t${round}` })), b.commitIssuance(commitOf(2 * round + 1, { token: `p:t${round}` }))]);
      expect(outcomes.sort()).toEqual(["committed", "replayed"]);
    }
    expect(await a.listCertificates({})).toHaveLength(40);
    expect((await a.audit.entries(0, 1000)).map((e) => e.idx)).toEqual([...Array(40).keys()]);
  });

  it("two replicas racing on one serial, one idempotency key, one intent, one renewal: one winner each time", async () => {
    const [a, b] = await two();
    for (let round = 0; round < 20; round++) {
      const serial = serialOf(1000 + round);
      const bySerial = await Promise.all([a.commitIssuance(commitOf(round, { serial, token: `p:x${round}` })), b.commitIssuance(commitOf(round, { serial, token: `p:y${round}` }))]);
      expect(bySerial.sort()).toEqual(["committed", "serial_collision"]);
      const byKey = await Promise.all([a.commitIssuance(commitOf(2000 + round, { idem: `key-${round}` })), b.commitIssuance(commitOf(3000 + round, { idem: `key-${round}` }))]);
      expect(byKey.sort()).toEqual(["committed", "idempotency_conflict"]);
      const byIntent = await Promise.all([a.recordIntent(intent(serialOf(4000 + round)), new Date(T0)), b.recordIntent(intent(serialOf(4000 + round)), new Date(T0))]);
      expect(byIntent.sort()).toEqual(["committed", "serial_collision"]);
    }
    // Two renewals of one certificate at once: one supersedes it, the other stores nothing.
    for (let round = 0; round < 10; round++) {
      const predecessor = serialOf(5000 + round);
      expect(await a.commitIssuance(commitOf(5000 + round))).toBe("committed");
      const renewals = await Promise.all([a.commitIssuance(commitOf(6000 + round, { supersedes: predecessor })), b.commitIssuance(commitOf(7000 + round, { supersedes: predecessor }))]);
      expect(renewals.sort()).toEqual(["committed", "superseded"]);
      const winner = (await a.getCertificate(predecessor))!.supersededBy;
      expect([serialOf(6000 + round), serialOf(7000 + round)]).toContain(winner);
      expect(await a.getCertificate(winner === serialOf(6000 + round) ? serialOf(7000 + round) : serialOf(6000 + round))).toBeNull();
    }
    // Exactly one of each pair's tokens is used: the loser's stays spendable.
    let used = 0;
    for (let round = 0; round < 20; round++) used += Number(await a.isTokenUsed(`p:x${round}`)) + Number(await a.isTokenUsed(`p:y${round}`));
    expect(used).toBe(20);
    expect(await a.listCertificates({})).toHaveLength(50);
  });

  it("revocation: first wins, with its time and reason, also when two replicas revoke at once", async () => {
    const [a, b] = await two();
    for (let n = 0; n < 20; n++) expect(await a.commitIssuance(commitOf(n))).toBe("committed");
    expect(await a.revokeCertificate(serialOf(99), new Date(T0), 1 as RevocationReason)).toEqual({ outcome: "not_found" });
    expect(await a.revokeCertificate(serialOf(0), new Date(T0 + 1), 1 as RevocationReason)).toEqual({ outcome: "revoked", revokedAt: new Date(T0 + 1), reason: 1 });
    expect(await b.revokeCertificate(serialOf(0), new Date(T0 + 2), 5 as RevocationReason)).toEqual({ outcome: "already_revoked", revokedAt: new Date(T0 + 1), reason: 1 });
    for (let n = 1; n < 20; n++) {
      const [ra, rb] = await Promise.all([a.revokeCertificate(serialOf(n), new Date(T0 + 10), 1 as RevocationReason), b.revokeCertificate(serialOf(n), new Date(T0 + 20), 5 as RevocationReason)]);
      const winner = ra.outcome === "revoked" ? ra : rb;
      const loser = ra.outcome === "revoked" ? rb : ra;
      expect(winner.outcome).toBe("revoked");
      expect(loser).toEqual({ outcome: "already_revoked", revokedAt: (winner as { revokedAt: Date }).revokedAt, reason: (winner as { reason: number }).reason });
      const status = await a.certificateStatus(serialOf(n));
      expect(status).toMatchObject({ status: "revoked", revokedAt: (winner as { revokedAt: Date }).revokedAt, revocationReason: (winner as { reason: number }).reason });
    }
    // One log row and one issuance-log entry per certificate.
    const events = await a.revocationsAfter(0, 100);
    expect(events.map((e) => e.serial).sort()).toEqual([...Array(20).keys()].map(serialOf).sort());
    expect((await kinds(a)).filter((k) => k === "revoked")).toHaveLength(20);
  });

  it("revocationsAfter pages in seq order, with the certificate's CRL partition; latestRevocationSeq follows", async () => {
    const s = await one();
    expect(await s.latestRevocationSeq()).toBe(0);
    expect(await s.revocationsAfter(0, 10)).toEqual([]);
    for (let n = 0; n < 7; n++) await s.commitIssuance(commitOf(n));
    const order = [3, 0, 6, 1, 5, 2, 4];
    for (const [i, n] of order.entries()) await s.revokeCertificate(serialOf(n), new Date(T0 + i), (i % 2) as RevocationReason);
    const pages: string[][] = [];
    let after = 0;
    for (;;) {
      const page = await s.revocationsAfter(after, 3);
      if (page.length === 0) break;
      pages.push(page.map((e) => e.serial));
      for (const e of page) expect(e.seq).toBeGreaterThan(after), (after = e.seq);
    }
    expect(pages).toEqual([[3, 0, 6], [1, 5, 2], [4]].map((p) => p.map(serialOf)));
    expect(await s.latestRevocationSeq()).toBe(after);
    const first = (await s.revocationsAfter(0, 1))[0]!;
    expect(first).toEqual({ seq: first.seq, serial: serialOf(3), issuerKeyId: ISSUER, revokedAt: new Date(T0), reason: 0, crlShard: null });
  });

  it("concurrent revocations from two replicas: gap-free seqs, never visible out of order to a polling reader", async () => {
    const [a, b] = await two();
    const N = 60;
    for (let n = 0; n < N; n++) await a.commitIssuance(commitOf(n));
    const seen: number[] = [];
    let done = false;
    const reader = (async () => {
      let last = 0;
      while (!done || last < (await a.latestRevocationSeq())) {
        for (const e of await a.revocationsAfter(last, 1000)) {
          expect(e.seq).toBeGreaterThan(last);
          seen.push(e.seq);
          last = e.seq;
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    const writers = [a, b].map(async (s, w) => {
      for (let n = w; n < N; n += 2) await s.revokeCertificate(serialOf(n), new Date(T0 + n), 1 as RevocationReason);
    });
    // Also interleaved with issuance, whose issued entries share the append lock.
    const issuing = (async () => {
      for (let n = N; n < N + 20; n++) await b.commitIssuance(commitOf(n));
    })();
    // The reader stops whatever the writers did, so a failure never leaves it polling a closed store.
    const written = Promise.all([...writers, issuing]).finally(() => (done = true));
    await Promise.all([written, reader]);
    // The reader saw every seq, each once, in order: none committed behind its mark.
    const all = (await a.revocationsAfter(0, 1000)).map((e) => e.seq);
    expect(all).toHaveLength(N);
    expect(seen).toEqual(all);
    expect(all).toEqual([...Array(N).keys()].map((i) => all[0]! + i));
    // The issuance log too: gapless, each entry's index its own.
    const log = await a.audit.entries(0, 1000);
    expect(log.map((e) => e.idx)).toEqual([...Array(N + N + 20).keys()]);
    for (const e of log) expect(JSON.parse(e.entry.toString("utf8")).i).toBe(e.idx);
  });

  it("issuance-log appends from two replicas: gapless, a polling reader's prefix never changes, leaf hashes as SqliteAuditLog computes", async () => {
    const [a, b] = await two();
    const fields = (n: number): AuditFields => ({ kind: "event", event: "test", details: { n } });
    const N = 80;
    const seenHashes = new Map<number, string>();
    let done = false;
    const reader = (async () => {
      while (!done) {
        const size = await a.audit.size();
        const hashes = await a.audit.leafHashes(0, size);
        expect(hashes).toHaveLength(size);
        hashes.forEach((h, i) => {
          const before = seenHashes.get(i);
          if (before !== undefined) expect(h.toString("hex")).toBe(before);
          seenHashes.set(i, h.toString("hex"));
        });
        await new Promise((r) => setImmediate(r));
      }
    })();
    const written = Promise.all(
      [a, b].map(async (s, w) => {
        for (let n = w; n < N; n += 2) await s.audit.append(fields(n), new Date(T0 + n));
      }),
    ).finally(() => (done = true));
    await Promise.all([written, reader]);
    const entries = await a.audit.entries(0, 1000);
    expect(entries.map((e) => e.idx)).toEqual([...Array(N).keys()]);
    // The same entries, in the same order and at the same times, appended to a reference
    // SqliteAuditLog give the same bytes and leaf hashes.
    const ref = new SqliteStore(join(dir, `reference-${++databases}.db`));
    closers.push(() => ref.close());
    for (const e of entries) {
      const parsed = JSON.parse(e.entry.toString("utf8")) as { details: { n: number } };
      ref.audit.append(fields(parsed.details.n), new Date(e.at));
    }
    expect(ref.audit.leafHashes(0, N).map((h) => h.toString("hex"))).toEqual((await a.audit.leafHashes(0, N)).map((h) => h.toString("hex")));
    expect(ref.audit.entries(0, N).map((e) => Buffer.from(e.entry).toString("hex"))).toEqual(entries.map((e) => Buffer.from(e.entry).toString("hex")));
    for (const [i, h] of seenHashes) expect(h).toBe(entries[i]!.leafHash.toString("hex"));
  });

  it("issuance log reads: entries, by serial, query, last of kind, tree heads, audit keys", async () => {
    const s = await one();
    await s.recordIntent(intent(serialOf(1)), new Date(T0));
    await s.commitIssuance(commitOf(1, { at: T0 + 1 }));
    await s.audit.append({ kind: "config_seen", sha256: "aa", provisioners: ["bootstrap"], changed: false }, new Date(T0 + 2));
    await s.audit.append({ kind: "config_seen", sha256: "bb", provisioners: ["bootstrap"], changed: true }, new Date(T0 + 3));
    expect(await s.audit.size()).toBe(4);
    expect((await s.audit.entriesForSerial(serialOf(1))).map((e) => e.kind)).toEqual(["intent", "issued"]);
    expect(JSON.parse((await s.audit.lastEntryOfKind("config_seen"))!.toString("utf8")).sha256).toBe("bb");
    expect(await s.audit.lastEntryOfKind("nothing")).toBeNull();
    expect((await s.audit.query({ subject: "h-0001.internal" }, 10)).map((e) => e.idx)).toEqual([1]);
    expect((await s.audit.query({ subject: "h-0001" }, 10)).map((e) => e.idx)).toEqual([]);
    expect((await s.audit.query({ provisioner: "bootstrap", sinceMs: T0 + 1 }, 10)).map((e) => e.idx)).toEqual([1]);
    expect((await s.audit.query({ kind: "config_seen" }, 1)).map((e) => e.idx)).toEqual([2]);
    expect((await s.audit.entries(1, 2)).map((e) => [e.idx, e.at, e.kind, e.serial, e.provisioner])).toEqual([[1, T0 + 1, "issued", serialOf(1), "bootstrap"], [2, T0 + 2, "config_seen", null, null]]);
    expect(await s.audit.latestTreeHead()).toBeNull();
    const head = (n: number): StoredTreeHead => ({ treeSize: n, rootHash: Buffer.alloc(32, n), timestamp: T0 + n, keyName: "audit-1", keySpki: Buffer.from([1, 2]), signature: Buffer.from([n]) });
    await s.audit.addTreeHead(head(2));
    await s.audit.addTreeHead(head(4));
    expect(await s.audit.latestTreeHead()).toEqual(head(4));
    expect(await s.audit.treeHeads()).toEqual([head(2), head(4)]);
    await s.audit.addAuditKey({ keyName: "audit-2", keySpki: Buffer.from([9]), createdAt: T0 + 1 });
    await s.audit.addAuditKey({ keyName: "audit-1", keySpki: Buffer.from([8]), createdAt: T0 });
    expect(await s.audit.auditKeys()).toEqual([{ keyName: "audit-1", keySpki: Buffer.from([8]), createdAt: T0 }, { keyName: "audit-2", keySpki: Buffer.from([9]), createdAt: T0 + 1 }]);
  });

  it("listCertificates filters: revoked, expiring, not expired, superseded, limit; ordered by notAfter then serial", async () => {
    const s = await one();
    for (let n = 0; n < 6; n++) await s.commitIssuance(commitOf(n, { notAfter: T0 + (n + 1) * DAY }));
    await s.commitIssuance(commitOf(6, { notAfter: T0 + 3 * DAY, supersedes: serialOf(0) }));
    await s.revokeCertificate(serialOf(4), new Date(T0), 1 as RevocationReason);
    const serials = async (q: Parameters<Store["listCertificates"]>[0]) => (await s.listCertificates(q)).map((c) => Number.parseInt(c.serial.slice(2), 16));
    expect(await serials({})).toEqual([1, 2, 6, 3, 4, 5]);
    expect(await serials({ includeSuperseded: true })).toEqual([0, 1, 2, 6, 3, 4, 5]);
    expect(await serials({ revoked: true })).toEqual([4]);
    expect(await serials({ expiringBefore: new Date(T0 + 3 * DAY) })).toEqual([1, 2, 6]);
    expect(await serials({ notExpiredAt: new Date(T0 + 3 * DAY) })).toEqual([3, 4, 5]);
    expect(await serials({ revoked: true, notExpiredAt: new Date(T0 + 10 * DAY) })).toEqual([4]);
    expect(await serials({ limit: 2 })).toEqual([1, 2]);
  });

  it("issuers: add and list; activation strictly after the last; revocation once; expiry and live counts", async () => {
    const s = await one();
    const root = issuer("bb".repeat(20), { role: "root", activatedAt: null, createdAt: new Date(T0 - 2 * DAY) });
    await s.addIssuer(root);
    await s.addIssuer(issuer("cc".repeat(20), { parentKeyId: root.keyId, activatedAt: null, createdAt: new Date(T0) }));
    const listed = await s.listIssuers();
    expect(listed.map((i) => i.keyId)).toEqual([root.keyId, ISSUER, "cc".repeat(20)]);
    expect(listed[0]).toEqual({ ...root, der: new Uint8Array(root.der) });
    expect(listed[2]!.activatedAt).toBeNull();
    const L = s.lifecycle;
    // The same instant as the current one's activation: strictly after it anyway.
    expect(await L.activateIntermediate("cc".repeat(20), new Date(T0 - DAY))).toBe(true);
    const after = (await s.listIssuers()).find((i) => i.keyId === "cc".repeat(20))!;
    expect(after.activatedAt!.getTime()).toBe(T0 - DAY + 1);
    expect(await L.activateIntermediate(root.keyId, new Date(T0))).toBe(false);
    expect(await L.activateIntermediate("dd".repeat(20), new Date(T0))).toBe(false);
    expect(await L.revokeIssuer(ISSUER, new Date(T0 + 5), 2)).toBe(true);
    expect(await L.revokeIssuer(ISSUER, new Date(T0 + 6), 5)).toBe(false);
    expect((await s.listIssuers()).find((i) => i.keyId === ISSUER)).toMatchObject({ revokedAt: new Date(T0 + 5), revocationReason: 2 });
    expect(await L.activateIntermediate(ISSUER, new Date(T0 + 7))).toBe(false);

    expect(await L.lastCertificateExpiry(ISSUER)).toBeNull();
    expect(await L.countLiveCertificates(ISSUER, new Date(T0))).toBe(0);
    await s.commitIssuance(commitOf(1, { notAfter: T0 + DAY }));
    await s.commitIssuance(commitOf(2, { notAfter: T0 + 5 * DAY }));
    await s.commitIssuance(commitOf(3, { notAfter: T0 + 3 * DAY }));
    await s.revokeCertificate(serialOf(2), new Date(T0), 1 as RevocationReason);
    expect(await L.lastCertificateExpiry(ISSUER)).toEqual(new Date(T0 + 5 * DAY));
    expect(await L.countLiveCertificates(ISSUER, new Date(T0))).toBe(2);
    expect(await L.countLiveCertificates(ISSUER, new Date(T0 + 2 * DAY))).toBe(1);
  });

  it("issuer changes commit whole with their renewal window, or not at all; a new root comes with its cross certificate; retirement once", async () => {
    const s = await one();
    const root = issuer("bb".repeat(20), { role: "root", activatedAt: null, createdAt: new Date(T0 - 2 * DAY) });
    const fresh = "cc".repeat(20);
    await s.addIssuer(root);
    await s.addIssuer(issuer(fresh, { parentKeyId: root.keyId, activatedAt: null, createdAt: new Date(T0) }));
    await s.commitIssuance(commitOf(1, { notAfter: T0 + DAY }));
    await s.commitIssuance(commitOf(2, { notAfter: T0 + DAY }));
    const windowsCount = () => s.countRows("renewal_windows");
    const override = (at: number) => ({ kind: "issuer" as const, value: ISSUER, start: new Date(at), end: new Date(at + 60_000), createdAt: new Date(at) });
    const L = s.lifecycle;

    // Refused: nothing of the change stays (no revocation, no window).
    expect(await L.changeIssuers({ revoke: { keyId: ISSUER, reason: 1 }, activate: "dd".repeat(20), renewalOverride: override(T0 + 1) }, new Date(T0 + 1))).toEqual({ outcome: "activate_refused" });
    expect((await s.listIssuers()).find((i) => i.keyId === ISSUER)!.revokedAt).toBeNull();
    expect(await windowsCount()).toBe(0);
    expect(await L.changeIssuers({ revoke: { keyId: "ee".repeat(20), reason: 1 }, renewalOverride: override(T0 + 1) }, new Date(T0 + 1))).toEqual({ outcome: "revoke_refused" });
    expect(await windowsCount()).toBe(0);

    // The kill switch's change: revoked, the fresh one issuing, its two live certificates pulled.
    expect(await L.changeIssuers({ revoke: { keyId: ISSUER, reason: 1 }, activate: fresh, renewalOverride: override(T0 + 2) }, new Date(T0 + 2))).toEqual({ outcome: "changed", matched: 2 });
    const after = await s.listIssuers();
    expect(after.find((i) => i.keyId === ISSUER)).toMatchObject({ revokedAt: new Date(T0 + 2), revocationReason: 1 });
    expect(after.find((i) => i.keyId === fresh)!.activatedAt!.getTime()).toBeGreaterThan(after.find((i) => i.keyId === ISSUER)!.activatedAt!.getTime());
    expect(await windowsCount()).toBe(1);
    expect(await L.changeIssuers({ revoke: { keyId: ISSUER, reason: 4 }, renewalOverride: override(T0 + 3) }, new Date(T0 + 3))).toEqual({ outcome: "revoke_refused" });

    // A rotation's new root and its cross certificate; the old root retired once.
    const newRoot = issuer("ff".repeat(20), { role: "root", activatedAt: null, createdAt: new Date(T0 + 4) });
    await L.addRootWithCross(newRoot, { subjectKeyId: newRoot.keyId, issuerKeyId: root.keyId, der: new Uint8Array([1, 2, 3]), notAfter: new Date(T0 + 9 * DAY), createdAt: new Date(T0 + 4) });
    expect((await s.listIssuers()).filter((i) => i.role === "root").map((i) => i.keyId)).toEqual([root.keyId, newRoot.keyId]);
    // A second root of the same key id is refused, and its cross certificate is not stored either.
    await expect(L.addRootWithCross(newRoot, { subjectKeyId: newRoot.keyId, issuerKeyId: root.keyId, der: new Uint8Array([4]), notAfter: new Date(T0 + 9 * DAY), createdAt: new Date(T0 + 5) })).rejects.toThrow();
    expect(await s.countRows("cross_certificates")).toBe(1);
    expect(await L.retireRoot(root.keyId)).toBe(true);
    expect(await L.retireRoot(root.keyId)).toBe(false);
    expect(await L.retireRoot(fresh)).toBe(false);
    expect((await s.listIssuers()).find((i) => i.keyId === root.keyId)!.status).toBe("retired");
  });

  it("inventory summary: the fleet's and the CA's own certificates counted apart, by state; the stored CRLs", async () => {
    const s = await one();
    await s.commitIssuance(commitOf(1, { notAfter: T0 + 2 * DAY }));
    await s.commitIssuance(commitOf(2, { notAfter: T0 + 3_600_000 }));
    await s.commitIssuance(commitOf(3, { notAfter: T0 + 2 * DAY }));
    await s.commitIssuance(commitOf(4, { notAfter: T0 - 1, at: T0 - DAY }));
    await s.commitIssuance(commitOf(5, { notAfter: T0 + DAY, provisioner: "fleetca-api" }));
    await s.revokeCertificate(serialOf(3), new Date(T0), 1 as RevocationReason);
    const summary = await s.inventorySummary(new Date(T0), ["fleetca-api"]);
    expect(summary.fleet).toEqual({ valid: 2, expiringWithin24h: 1, revoked: 1, expired: 1 });
    expect(summary.internal).toEqual({ valid: 1, expiringWithin24h: 0, revoked: 0, expired: 0 });
    expect(summary.crls).toEqual([]);
  });

  it("provisioner keys; pruneExpired drops used tokens and idempotency keys past expiry only; ping", async () => {
    const s = await one();
    expect(await s.getProvisionerKey("ops")).toBeNull();
    await s.addProvisionerKey({ name: "ops", kid: "kid-1", publicJwk: { kty: "OKP", crv: "Ed25519", x: "abc" }, createdAt: new Date(T0) });
    expect(await s.getProvisionerKey("ops")).toEqual({ name: "ops", kid: "kid-1", publicJwk: { kty: "OKP", crv: "Ed25519", x: "abc" }, createdAt: new Date(T0) });
    await s.commitIssuance(commitOf(1, { token: "p:1", idem: "k1" })); // token until T0+5 min, key until T0+1 day
    await s.commitIssuance(commitOf(2, { token: "p:2", at: T0 + DAY }));
    expect(await s.pruneExpired(new Date(T0))).toBe(0);
    expect(await s.pruneExpired(new Date(T0 + 600_000))).toBe(1);
    expect(await s.isTokenUsed("p:1")).toBe(false);
    expect(await s.pruneExpired(new Date(T0 + DAY + 1))).toBe(1);
    expect(await s.pruneExpired(new Date(T0 + 2 * DAY))).toBe(1);
    expect(await s.isTokenUsed("p:2")).toBe(false);
    expect(await s.ping()).toBe(true);
  });
});

describe("PostgreSQL specifics", () => {
  it("announces each revocation on fleetca_revocation with its seq, at commit", async () => {
    const url = await server.createDatabase(`t${++databases}`);
    const store = await PgStore.open({ url });
    closers.push(() => store.close());
    await store.addIssuer(issuer());
    for (let n = 0; n < 3; n++) await store.commitIssuance(commitOf(n, { instance: "i-1", provisioner: "aws" }));
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    closers.push(() => listener.end());
    const payloads: string[] = [];
    listener.on("notification", (m) => {
      if (m.channel === REVOCATION_CHANNEL) payloads.push(m.payload ?? "");
    });
    await listener.query(`LISTEN ${REVOCATION_CHANNEL}`);
    await store.revokeCertificate(serialOf(0), new Date(T0), 1 as RevocationReason);
    await store.revokeCertificate(serialOf(0), new Date(T0), 1 as RevocationReason); // already revoked: no announcement
    await store.commitIssuance(commitOf(9, { instance: "i-1", provisioner: "aws", retireInstance: true }));
    await new Promise((r) => setTimeout(r, 200));
    expect(payloads).toEqual((await store.revocationsAfter(0, 10)).map((e) => String(e.seq)));
    expect(payloads).toHaveLength(3);
  });

  it("an append waiting for the turn reads the previous holder's rows: the next index, and its intent's serial as taken", async () => {
    const url = await server.createDatabase(`t${++databases}`);
    const store = await PgStore.open({ url });
    closers.push(() => store.close());
    await store.addIssuer(issuer());
    // The holder appends an intent under the turn and keeps it; meanwhile an intent for the same
    // serial, one for another serial and an issuance queue behind it. The lock statement and
    // the INSERT travel in one message: the INSERT must take its snapshot after the grant, or
    // it would read the old MAX(idx) (a duplicate index) and miss the holder's intent.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    closers.push(() => holder.end());
    await holder.query("BEGIN");
    await appendAuditEntry(holder, intent(serialOf(1)), new Date(T0));
    const sameSerial = store.recordIntent(intent(serialOf(1)), new Date(T0));
    const otherSerial = store.recordIntent(intent(serialOf(2)), new Date(T0 + 1));
    const issuance = store.commitIssuance(commitOf(3, { token: "p:3" }));
    for (let i = 0; i < 200; i++) {
      const { rows } = await holder.query<{ n: string }>("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
      if (Number(rows[0]!.n) === 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await store.audit.size()).toBe(0);
    await holder.query("COMMIT");
    expect(await sameSerial).toBe("serial_collision");
    expect(await otherSerial).toBe("committed");
    expect(await issuance).toBe("committed");
    const entries = await store.audit.entries(0, 10);
    expect(entries.map((e) => e.idx)).toEqual([0, 1, 2]);
    expect(entries.map((e) => e.kind).sort()).toEqual(["intent", "intent", "issued"]);
    expect(entries.filter((e) => e.serial === serialOf(1))).toHaveLength(1);
  });

  it("entries built on the server are encodeEntry's bytes and leafHash's hash, whatever the fields hold", async () => {
    const url = await server.createDatabase(`t${++databases}`);
    const store = await PgStore.open({ url });
    closers.push(() => store.close());
    await store.addIssuer(issuer());
    const odd = `it's "quoted" \\ back\\slash \u00e9 \u{1F600} \n line'); DROP TABLE audit_log; --`;
    const fields: AuditFields[] = [
      { kind: "event", event: "test", details: { i: 0, n: -1, odd, flag: true, none: null } },
      { kind: "event", event: odd, details: {} },
      { ...intent(serialOf(1)), sans: ["\u00fcber.internal", odd], client: "::1" },
      { kind: "token_refused", provisioner: null, reason: odd, client: null },
    ];
    // Twelve entries: indexes of one and of two digits.
    const appended: Array<{ f: AuditFields; at: number }> = [];
    for (let n = 0; n < 12; n++) {
      const f = fields[n % fields.length]!;
      const at = T0 + n * 1_001;
      if (f.kind === "intent") {
        expect(await store.recordIntent({ ...f, serial: serialOf(n) }, new Date(at))).toBe("committed");
        appended.push({ f: { ...f, serial: serialOf(n) }, at });
      } else {
        await (n % 2 === 0 ? store.audit.append(f, new Date(at)) : store.recordAudit(f, new Date(at)));
        appended.push({ f, at });
      }
    }
    const entries = await store.audit.entries(0, 100);
    expect(entries).toHaveLength(12);
    entries.forEach((e, i) => {
      const bytes = encodeEntry({ ...appended[i]!.f, v: 1, i, t: appended[i]!.at } as AuditEntry);
      expect(e.idx).toBe(i);
      expect(Buffer.from(e.entry).toString("hex")).toBe(bytes.toString("hex"));
      expect(Buffer.from(e.leafHash).toString("hex")).toBe(leafHash(bytes).toString("hex"));
      expect(decodeEntry(e.entry).i).toBe(i);
    });
    expect((await store.audit.query({ subject: odd }, 100)).map((e) => e.idx)).toEqual([2, 6, 10]);
  });

  it("a connection lost mid-commit: CaError unavailable, nothing of the commit stored", async () => {
    const url = await server.createDatabase(`t${++databases}`);
    const store = await PgStore.open({ url });
    closers.push(() => store.close());
    await store.addIssuer(issuer());
    // Another session holds the append lock, so the commit stops at its issued entry, after its
    // certificate and token rows were written; its backend is then terminated.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    closers.push(() => holder.end());
    await holder.query("BEGIN");
    await holder.query(`SELECT pg_advisory_xact_lock(${APPEND_LOCK})`);
    const commit = store.commitIssuance(commitOf(1, { token: "p:lost", idem: "k" })).catch((e: unknown) => e);
    let waiting: number | undefined;
    for (let i = 0; i < 100 && waiting === undefined; i++) {
      const { rows } = await holder.query<{ pid: number }>("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
      waiting = rows[0]?.pid;
      if (waiting === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    expect(waiting).toBeDefined();
    await holder.query("SELECT pg_terminate_backend($1)", [waiting]);
    await holder.query("COMMIT");
    const err = await commit;
    expect(err).toBeInstanceOf(CaError);
    expect((err as CaError).code).toBe("unavailable");
    expect((err as CaError).message).not.toContain("127.0.0.1");
    expect(await store.getCertificate(serialOf(1))).toBeNull();
    expect(await store.isTokenUsed("p:lost")).toBe(false);
    expect(await store.audit.size()).toBe(0);
    // The pool recovered: the same commit now goes through.
    expect(await store.commitIssuance(commitOf(1, { token: "p:lost", idem: "k" }))).toBe("committed");
  });

  it("a stopped database: ping answers false, commits and revocations reject with CaError unavailable", async () => {
    const own = await startPostgres();
    let stopped = false;
    closers.push(async () => {
      if (!stopped) await own.stop();
    });
    const store = await PgStore.open({ url: own.url });
    closers.push(() => store.close());
    await store.addIssuer(issuer());
    expect(await store.commitIssuance(commitOf(1))).toBe("committed");
    expect(await store.ping()).toBe(true);
    await own.stop();
    stopped = true;
    const t0 = performance.now();
    expect(await store.ping()).toBe(false);
    expect(performance.now() - t0).toBeLessThan(3_000);
    for (const attempt of [
      () => store.commitIssuance(commitOf(2, { token: "p:down" })),
      () => store.revokeCertificate(serialOf(1), new Date(T0), 1 as RevocationReason),
      () => store.recordIntent(intent(serialOf(3)), new Date(T0)),
      () => store.getCertificate(serialOf(1)),
    ]) {
      const err = await attempt().then(
        () => new Error("resolved"),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CaError);
      expect((err as CaError).code).toBe("unavailable");
    }
  });

  it("open on an unreachable database rejects with CaError unavailable", async () => {
    const err = await PgStore.open({ url: "postgres://fleetca@127.0.0.1:1/fleetca" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaError);
    expect((err as CaError).code).toBe("unavailable");
  });
});
