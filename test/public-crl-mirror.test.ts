import { afterAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";
import { SqliteCrlCatalog } from "../src/storage/sqlite/sqlite-crl-catalog.js";
import { CrlMirror } from "../src/revocation/crl/crl-mirror.js";
import type { StoredCrl } from "../src/storage/ports.js";

/** What a public worker serves: the CRLs the primary stored, exactly, read in chunks. */
describe("CrlMirror over the SQLite catalog (a public worker's CRLs)", () => {
  // On /dev/shm when there is one: the same SQLite calls without a disk's fsync latency.
  const dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "fleetca-mirror-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const log = pino({ level: "silent" });

  function setUp() {
    const store = new SqliteStore(join(dir, `${randomBytes(4).toString("hex")}.db`));
    for (const [keyId, role] of [["aa", "intermediate"], ["rr", "root"]] as const) {
      store.addIssuer({ keyId, role, keyName: keyId, parentKeyId: null, der: new Uint8Array([0]), notBefore: new Date(0), notAfter: new Date(10_000), status: "active", createdAt: new Date(0), revokedAt: null, revocationReason: null });
    }
    store.registerCrlShards("aa", [0, 1]);
    // A worker opens the database read-only; the catalog must work over such a handle.
    const reader = new SqliteStore(store.db.name, { readonly: true });
    const catalog = new SqliteCrlCatalog(reader.db);
    return { store, reader, catalog, mirror: new CrlMirror(catalog, ["aa"], ["rr"], "aa", log) };
  }
  const crl = (issuerKeyId: string, shard: number | null, n: number, size = 100): StoredCrl => ({
    issuerKeyId, shard, crlNumber: n, thisUpdate: new Date(n * 1000), nextUpdate: new Date(n * 1000 + 500), entries: 0, revocationSeq: n, der: new Uint8Array(randomBytes(size)),
  });
  const same = (a: Uint8Array | undefined, b: Uint8Array) => a !== undefined && Buffer.from(a).equals(Buffer.from(b));

  it("knows every scope before anything is stored, then serves each stored CRL byte for byte, in /crls.pem order", async () => {
    const { store, reader, catalog, mirror } = setUp();
    try {
      await mirror.refresh();
      expect([mirror.knows("aa", null), mirror.knows("aa", 0), mirror.knows("aa", 1), mirror.knows("rr", null)]).toEqual([true, true, true, true]);
      expect([mirror.knows("aa", 2), mirror.knows("bb", null), mirror.knows("rr", 0)]).toEqual([false, false, false]);
      expect(mirror.currentCrl()).toBeUndefined();
      expect(mirror.all()).toEqual([]);

      const full = crl("aa", null, 3, 1_300_000); // 11 chunks of 128 KiB
      const s1 = crl("aa", 1, 1);
      const s0 = crl("aa", 0, 2);
      const root = crl("rr", null, 1);
      for (const c of [full, s1, s0, root]) expect(await store.saveCrl(c)).toBe(true);
      expect(same((await catalog.readCrl({ issuerKeyId: "aa", shard: null }))?.der, full.der)).toBe(true);
      await mirror.refresh();
      expect(same(mirror.currentCrl()?.der, full.der)).toBe(true);
      expect(mirror.crlFor("aa", 0)?.crlNumber).toBe(2);
      // (Compared by Buffer.equals: a deep equality over 1.3 M elements takes seconds.)
      const all = mirror.all();
      expect(all).toHaveLength(4);
      [root, full, s0, s1].forEach((c, i) => expect(same(all[i]?.der, c.der), `bundle entry ${i}`).toBe(true));
      // A new number is picked up by the next refresh; the others are not read again.
      const next = crl("aa", null, 4, 200_000);
      expect(await store.saveCrl(next)).toBe(true);
      await mirror.refresh();
      expect(same(mirror.currentCrl()?.der, next.der)).toBe(true);
    } finally {
      reader.close();
      store.close();
    }
  });

  it("reads in chunks with yields; a CRL replaced while it is read is not served half, the previous one stays until the next refresh", async () => {
    const { store, reader, catalog, mirror } = setUp();
    try {
      const first = crl("aa", null, 1, 400_000);
      expect(await store.saveCrl(first)).toBe(true);
      await mirror.refresh();
      const second = crl("aa", null, 2, 900_000);
      expect(await store.saveCrl(second)).toBe(true);
      // The read takes chunk 0 before its first yield; the primary's sweep of a replaced write then
      // removes the rest (simulated by deleting one chunk): the read gives up instead of mixing.
      const reading = catalog.readCrl({ issuerKeyId: "aa", shard: null });
      const refreshing = mirror.refresh();
      store.db.prepare("DELETE FROM crl_chunks WHERE issuer_key_id = 'aa' AND shard = -1 AND seq = 4").run();
      expect(await reading).toBeNull();
      await refreshing;
      expect(same(mirror.currentCrl()?.der, first.der)).toBe(true);
      const third = crl("aa", null, 3, 500_000);
      expect(await store.saveCrl(third)).toBe(true);
      await mirror.refresh();
      expect(same(mirror.currentCrl()?.der, third.der)).toBe(true);
    } finally {
      reader.close();
      store.close();
    }
  });
});
