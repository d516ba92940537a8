import pino from "pino";
import { describe, expect, it } from "vitest";
import { LeaseKeeper, type LeaseStore } from "../src/cluster/lease-keeper.js";
import { ManualClock } from "../src/core/clock.js";
import type { CrlScope, StoredCrl } from "../src/storage/ports.js";
import { STORAGE_BACKENDS, useStorageBackend } from "./harness/storage-backends.js";

const ISSUER = "ab".repeat(20);
const FULL: CrlScope = { issuerKeyId: ISSUER, shard: null };
const SHARD: CrlScope = { issuerKeyId: ISSUER, shard: 3 };
const scopeName = (s: CrlScope) => `${s.issuerKeyId}/${s.shard ?? "full"}`;
const log = pino({ level: "silent" });
const timing = { leaseMs: 15_000, renewEveryMs: 5_000 };

/**
 * The lease keeper over the real lease table on each adapter (two processes: two connections to
 * one SQLite file, two pools on one PostgreSQL database; test/replicas.test.ts runs it across real
 * replicas on PostgreSQL), time driven by a manual clock.
 */
describe.each(STORAGE_BACKENDS)("LeaseKeeper on %s", (backendName) => {
  const backend = useStorageBackend(backendName);
  const twoProcesses = async () => {
    const a = await backend.fresh();
    const b = await backend.another(a);
    await a.issuers.addIssuer({ keyId: ISSUER, role: "intermediate", keyName: "k", parentKeyId: null, der: Uint8Array.of(0x30, 0), notBefore: new Date(0), notAfter: new Date(4e12), status: "active", createdAt: new Date(0), revokedAt: null, revocationReason: null, activatedAt: new Date(0) });
    return { a: a.crlLeases, b: b.crlLeases };
  };
  const crl = (n: number): StoredCrl => ({ ...FULL, crlNumber: n, thisUpdate: new Date(0), nextUpdate: new Date(1e12), entries: 0, revocationSeq: 0, der: Uint8Array.of(0x30, 0) });

  it("one holder per scope; a dead holder's lease moves after it runs out; the old holder's fenced save is refused", async () => {
    const clock = new ManualClock(new Date("2026-12-02T12:00:00Z"));
    const { a: storeA, b: storeB } = await twoProcesses();
    const changes: string[] = [];
    const a = new LeaseKeeper(storeA, "replica-a", scopeName, clock, timing, log, (s, held) => changes.push(`a ${scopeName(s)} ${held}`));
    const b = new LeaseKeeper(storeB, "replica-b", scopeName, clock, timing, log, (s, held) => changes.push(`b ${scopeName(s)} ${held}`));
    a.track([FULL, SHARD]);
    b.track([FULL, SHARD]);
    await a.tick();
    await b.tick();
    expect([a.holds(FULL), a.holds(SHARD), b.holds(FULL), b.holds(SHARD)]).toEqual([true, true, false, false]);
    expect(await storeA.saveCrlAsHolder(crl(1), "replica-a", clock.now())).toBe(true);

    // a renews in time: it keeps both, b still gets nothing.
    clock.advance(10_000);
    await a.tick();
    await b.tick();
    expect([a.holds(FULL), b.holds(FULL)]).toEqual([true, false]);

    // a stops renewing (a SIGKILL): within the lease time its leases count as its own, after it b takes them.
    clock.advance(14_000);
    await b.tick();
    expect(b.holds(FULL)).toBe(false);
    clock.advance(1_001);
    expect(a.holds(FULL)).toBe(false);
    await b.tick();
    expect([b.holds(FULL), b.holds(SHARD)]).toEqual([true, true]);
    // a, paused past its lease, wakes up: its write is refused (holder), b's goes through (number).
    expect(await storeA.saveCrlAsHolder(crl(2), "replica-a", clock.now())).toBe(false);
    expect(await storeB.saveCrlAsHolder(crl(2), "replica-b", clock.now())).toBe(true);
    expect(await storeB.saveCrlAsHolder(crl(2), "replica-b", clock.now())).toBe(false);
    await a.tick();
    expect(a.holds(FULL)).toBe(false);
    expect(changes).toEqual([`a ${scopeName(FULL)} true`, `a ${scopeName(SHARD)} true`, `b ${scopeName(FULL)} true`, `b ${scopeName(SHARD)} true`]);

    // b shuts down cleanly: its leases are handed back and a takes them at its next attempt.
    await b.stop();
    await a.tick();
    expect([a.holds(FULL), a.holds(SHARD)]).toEqual([true, true]);
  });

  it("while the store cannot be reached, what is held stays held until it runs out, then is given up", async () => {
    const clock = new ManualClock(new Date("2026-12-02T12:00:00Z"));
    const { a: real } = await twoProcesses();
    let down = false;
    const flaky: LeaseStore<CrlScope> = {
      acquire: (s, h, u, n) => (down ? Promise.reject(new Error("connection refused")) : real.acquire(s, h, u, n)),
      release: (s, h) => real.release(s, h),
    };
    const lost: string[] = [];
    const k = new LeaseKeeper(flaky, "replica-a", scopeName, clock, timing, log, (s, held) => {
      if (!held) lost.push(scopeName(s));
    });
    k.track([FULL]);
    await k.tick();
    expect(k.holds(FULL)).toBe(true);
    down = true;
    clock.advance(10_000);
    await k.tick();
    expect(k.holds(FULL)).toBe(true);
    clock.advance(5_001);
    await k.tick();
    expect(k.holds(FULL)).toBe(false);
    expect(lost).toEqual([scopeName(FULL)]);
    down = false;
    await k.tick();
    expect(k.holds(FULL)).toBe(true);
  });

  it("refuses a timing that cannot renew before the lease runs out", async () => {
    const { a } = await twoProcesses();
    expect(() => new LeaseKeeper(a, "x", scopeName, new ManualClock(), { leaseMs: 10_000, renewEveryMs: 6_000 }, log)).toThrow(/renewed at least twice/);
  });
});
