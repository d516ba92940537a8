import { describe, expect, it } from "vitest";
import express from "express";
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { systemClock } from "../src/core/clock.js";
import { createCrlRouter } from "../src/api/crl-router.js";
import type { CrlCatalog, CrlSnapshot } from "../src/storage/ports.js";
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { CrlMirror } from "../src/revocation/crl/crl-mirror.js";
import type { StoredCrl } from "../src/storage/ports.js";
import type { ServedCrl } from "../src/api/crl-router.js";
import { STORAGE_BACKENDS, useStorageBackend } from "./harness/storage-backends.js";

/**
 * What a public worker serves: the CRLs the primary stored, exactly, read in chunks. The primary
 * writes through its storage's CrlStore; the worker, another process on the same database, reads
 * through its own storage's CrlCatalog.
 */
describe.each(STORAGE_BACKENDS)("CrlMirror over the %s catalog (a public worker's CRLs)", (backendName) => {
  const backend = useStorageBackend(backendName);
  const log = pino({ level: "silent" });

  async function setUp() {
    const primary = await backend.fresh();
    const store = primary.crls;
    for (const [keyId, role] of [["aa", "intermediate"], ["rr", "root"]] as const) {
      await primary.issuers.addIssuer({ keyId, role, keyName: keyId, parentKeyId: null, der: new Uint8Array([0]), notBefore: new Date(0), notAfter: new Date(10_000), status: "active", createdAt: new Date(0), revokedAt: null, revocationReason: null, activatedAt: null });
    }
    await store.registerCrlShards("aa", [0, 1]);
    // A worker opens a SQLite database read-only; the catalog must work over such a handle.
    const worker = await backend.another(primary, { readonly: true });
    const catalog = worker.crlCatalog;
    // Everything in memory here (the streamed path has its own tests below).
    return { primary, store, sql: backend.sql(primary), catalog, mirror: new CrlMirror(catalog, ["aa"], ["rr"], "aa", log, { streamAbove: 100_000_000 }) };
  }
  const crl = (issuerKeyId: string, shard: number | null, n: number, size = 100): StoredCrl => ({
    issuerKeyId, shard, crlNumber: n, thisUpdate: new Date(n * 1000), nextUpdate: new Date(n * 1000 + 500), entries: 0, revocationSeq: n, der: new Uint8Array(randomBytes(size)),
  });
  const same = (a: ServedCrl | Uint8Array | undefined, b: Uint8Array) => {
    const der = a === undefined || a instanceof Uint8Array ? a : "der" in a ? a.der : undefined;
    return der !== undefined && Buffer.from(der).equals(Buffer.from(b));
  };

  it("knows every scope before anything is stored, then serves each stored CRL byte for byte, in /crls.pem order", async () => {
    const { store, catalog, mirror } = await setUp();
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
    expect(same(mirror.currentCrl(), full.der)).toBe(true);
    expect(mirror.crlFor("aa", 0)?.crlNumber).toBe(2);
    // (Compared by Buffer.equals: a deep equality over 1.3 M elements takes seconds.)
    const all = mirror.all();
    expect(all).toHaveLength(4);
    [root, full, s0, s1].forEach((c, i) => expect(same(all[i], c.der), `bundle entry ${i}`).toBe(true));
    // A new number is picked up by the next refresh; the others are not read again.
    const next = crl("aa", null, 4, 200_000);
    expect(await store.saveCrl(next)).toBe(true);
    await mirror.refresh();
    expect(same(mirror.currentCrl(), next.der)).toBe(true);
  });

  it("reads in chunks with yields; a CRL replaced while it is read is not served half, the previous one stays until the next refresh", async () => {
    const { store, sql, catalog, mirror } = await setUp();
    const first = crl("aa", null, 1, 400_000);
    expect(await store.saveCrl(first)).toBe(true);
    await mirror.refresh();
    const second = crl("aa", null, 2, 900_000);
    expect(await store.saveCrl(second)).toBe(true);
    // The read takes chunk 0 before its first yield; the primary's sweep of a replaced write then
    // removes the rest (simulated by deleting one chunk): the read gives up instead of mixing.
    // On SQLite chunk 0 is read synchronously, so the DELETE always lands mid-read. On PostgreSQL
    // every chunk is a round trip on the worker's pool and the DELETE one on another connection:
    // a loaded machine can let the read finish first, and then it has the whole second CRL. Either
    // is right; a CRL mixed from two writes, or cut short, never is.
    const reading = catalog.readCrl({ issuerKeyId: "aa", shard: null });
    const refreshing = mirror.refresh();
    await sql("DELETE FROM crl_chunks WHERE issuer_key_id = 'aa' AND shard = -1 AND seq = 4");
    const read = await reading;
    if (backendName === "SQLite") expect(read).toBeNull();
    else expect(read === null || same(read, second.der), "the racing read is nothing or all of the second CRL").toBe(true);
    // Read after the chunk is gone, it is refused on both: the gap is seen, not papered over.
    expect(await catalog.readCrl({ issuerKeyId: "aa", shard: null })).toBeNull();
    await refreshing;
    if (backendName === "SQLite") expect(same(mirror.currentCrl(), first.der)).toBe(true);
    else expect(same(mirror.currentCrl(), first.der) || same(mirror.currentCrl(), second.der), "the mirror serves one whole CRL").toBe(true);
    // A refresh now cannot read the second CRL: the one served stays.
    const served = Buffer.from((mirror.currentCrl() as ServedCrl & { der: Uint8Array }).der);
    await mirror.refresh();
    expect(same(mirror.currentCrl(), served)).toBe(true);
    const third = crl("aa", null, 3, 500_000);
    expect(await store.saveCrl(third)).toBe(true);
    await mirror.refresh();
    expect(same(mirror.currentCrl(), third.der)).toBe(true);
  });

  it("a refresh asked for while one reads (a tick, setIssuers after a rotation) gets a read of its own after it: a new issuer's CRL is loaded, a dropped one's is not put back", async () => {
    const { primary, store, catalog } = await setUp();
    await primary.issuers.addIssuer({ keyId: "bb", role: "intermediate", keyName: "bb", parentKeyId: null, der: new Uint8Array([0]), notBefore: new Date(0), notAfter: new Date(10_000), status: "active", createdAt: new Date(0), revokedAt: null, revocationReason: null, activatedAt: null });
    const aa = crl("aa", null, 1);
    const bb = crl("bb", null, 1);
    for (const c of [aa, bb]) expect(await store.saveCrl(c)).toBe(true);
    // The real catalog, its list of stored CRLs answered 30 ms late (a database across a network).
    let lists = 0;
    const slow: CrlCatalog = {
      storedCrls: async () => {
        lists++;
        const heads = await catalog.storedCrls();
        await new Promise((r) => setTimeout(r, 30));
        return heads;
      },
      registeredShards: () => catalog.registeredShards(),
      readCrl: (scope) => catalog.readCrl(scope),
      openSnapshot: () => catalog.openSnapshot(),
    };
    const mirror = new CrlMirror(slow, ["aa"], ["rr"], "aa", log, { streamAbove: 100_000_000 });
    const first = mirror.refresh();
    await new Promise((r) => setTimeout(r, 5));
    // The rotation: bb is current, aa no longer answers; asked while the first read is under way.
    await mirror.setIssuers(["bb"], "bb");
    await first;
    expect(lists).toBe(2);
    expect(same(mirror.currentCrl(), bb.der)).toBe(true);
    expect(mirror.crlFor("aa", null)).toBeUndefined();
    expect([mirror.knows("bb", null), mirror.knows("aa", null)]).toEqual([true, false]);
  });

  describe("large CRLs streamed from the store (crl.streamAbove)", () => {
    /** The catalog as the worker has it, counting the snapshots open and the chunks read. */
    function counting(catalog: CrlCatalog) {
      const stats = { open: 0, chunks: 0 };
      const wrapped: CrlCatalog = {
        storedCrls: () => catalog.storedCrls(),
        registeredShards: () => catalog.registeredShards(),
        readCrl: (scope) => catalog.readCrl(scope),
        openSnapshot: async (): Promise<CrlSnapshot> => {
          const snap = await catalog.openSnapshot();
          stats.open++;
          let closed = false;
          return {
            head: (scope) => snap.head(scope),
            reader: (head) => {
              const r = snap.reader(head);
              return { next: async () => { const c = await r.next(); if (c) stats.chunks++; return c; } };
            },
            release: () => snap.release(),
            close: async () => {
              if (!closed) stats.open--;
              closed = true;
              await snap.close();
            },
          };
        },
      };
      return { wrapped, stats };
    }

    async function serve(opts: { snapshotMs?: number; stallMs?: number } = {}) {
      const base = await setUp();
      const { wrapped, stats } = counting(base.catalog);
      const mirror = new CrlMirror(wrapped, ["aa"], ["rr"], "aa", log, { streamAbove: 1_000 });
      const app = express();
      app.use(createCrlRouter(mirror, systemClock, { intervalMs: 3_600_000, log, ...opts }));
      const server = createServer(app);
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const close = async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      };
      return { ...base, mirror, stats, url, server, close };
    }

    /** One request; `paused` leaves the response unread until resume() (a slow client). */
    function fetchRaw(url: string, opts: { method?: string; headers?: Record<string, string>; paused?: boolean } = {}) {
      let res!: IncomingMessage;
      const chunks: Buffer[] = [];
      let settle!: (r: { status: number; headers: IncomingMessage["headers"]; body: Buffer; complete: boolean }) => void;
      const done = new Promise<{ status: number; headers: IncomingMessage["headers"]; body: Buffer; complete: boolean }>((resolve) => (settle = resolve));
      const started = new Promise<IncomingMessage>((resolve, reject) => {
        const req = request(url, { method: opts.method ?? "GET", headers: opts.headers }, (r) => {
          res = r;
          if (opts.paused) r.pause();
          // Listened to here, not after a promise: an empty body ends before a .then() would run.
          const finish = () => settle({ status: r.statusCode!, headers: r.headers, body: Buffer.concat(chunks), complete: r.complete });
          r.on("data", (c: Buffer) => chunks.push(c));
          r.on("end", finish);
          r.on("close", finish);
          r.on("error", () => {});
          resolve(r);
        });
        req.on("error", reject);
        req.end();
      });
      return { started, done, resume: () => res.resume(), received: () => chunks.reduce((n, c) => n + c.length, 0) };
    }
    const pem = (der: Uint8Array) => `-----BEGIN X509 CRL-----\n${Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n")}-----END X509 CRL-----\n`;
    const until = async (what: string, ok: () => boolean) => {
      for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
      if (!ok()) throw new Error(`timed out waiting for ${what}`);
    };

    it("holds only the head of a CRL above the threshold and serves its exact bytes, HEAD and conditional GET as from memory; /crls.pem streams it too", async () => {
      const t = await serve();
      try {
        const full = crl("aa", null, 7, 400_000); // 4 chunks of 128 KiB
        const small = crl("rr", null, 2, 900);
        for (const c of [full, small]) expect(await t.store.saveCrl(c)).toBe(true);
        await t.mirror.refresh();
        expect("der" in t.mirror.currentCrl()!).toBe(false);
        expect(t.mirror.currentCrl()).toMatchObject({ crlNumber: 7, length: 400_000 });
        expect("der" in t.mirror.crlFor("rr", null)!).toBe(true);

        const got = await fetchRaw(`${t.url}/crl`).done;
        expect(got.status).toBe(200);
        expect(got.headers["content-length"]).toBe("400000");
        expect(got.headers["content-type"]).toBe("application/pkix-crl");
        expect(got.headers.etag).toBe('"7"');
        expect(got.headers["last-modified"]).toBe(full.thisUpdate.toUTCString());
        expect(got.body.equals(Buffer.from(full.der))).toBe(true);
        expect((await fetchRaw(`${t.url}/crl/aa`).done).body.equals(Buffer.from(full.der))).toBe(true);

        const head = await fetchRaw(`${t.url}/crl`, { method: "HEAD" }).done;
        expect([head.status, head.headers["content-length"], head.headers.etag, head.body.length]).toEqual([200, "400000", '"7"', 0]);
        expect((await fetchRaw(`${t.url}/crl`, { headers: { "if-none-match": '"7"' } }).done).status).toBe(304);
        expect((await fetchRaw(`${t.url}/crl`, { headers: { "if-modified-since": full.thisUpdate.toUTCString() } }).done).status).toBe(304);
        const stale = await fetchRaw(`${t.url}/crl`, { headers: { "if-none-match": '"6"' } }).done;
        expect(stale.status).toBe(200);
        expect(stale.body.equals(Buffer.from(full.der))).toBe(true);

        const bundle = await fetchRaw(`${t.url}/crls.pem`).done;
        expect(bundle.status).toBe(200);
        expect(bundle.body.toString("latin1")).toBe(pem(small.der) + pem(full.der));
        await until("every snapshot closed", () => t.stats.open === 0);
      } finally {
        await t.close();
      }
    });

    it("a CRL replaced while a slow client is mid-download: that client gets all of the old one, the next request all of the new one", async () => {
      const t = await serve();
      try {
        // Larger than loopback's socket buffers, so the server has to wait for the client.
        const old = crl("aa", null, 1, 16_000_000);
        expect(await t.store.saveCrl(old)).toBe(true);
        await t.mirror.refresh();
        const slow = fetchRaw(`${t.url}/crl`, { paused: true });
        await slow.started;
        await until("the server waiting on the client", () => t.stats.chunks > 0);
        await new Promise((r) => setTimeout(r, 100));
        const readBefore = t.stats.chunks;
        expect(readBefore).toBeLessThan(Math.ceil(old.der.length / 131_072));

        const next = crl("aa", null, 2, 3_000_000);
        expect(await t.store.saveCrl(next)).toBe(true);
        // The old chunks are gone from the database: the rest can only come from the snapshot.
        expect(await t.sql("SELECT COUNT(*) FROM crl_chunks WHERE crl_number = 1")).toEqual([[0]]);
        await t.mirror.refresh();
        slow.resume();
        const got = await slow.done;
        expect(got.complete).toBe(true);
        expect(got.body.length).toBe(old.der.length);
        expect(got.body.equals(Buffer.from(old.der))).toBe(true);
        const after = await fetchRaw(`${t.url}/crl`).done;
        expect(after.headers.etag).toBe('"2"');
        expect(after.body.equals(Buffer.from(next.der))).toBe(true);
        await until("every snapshot closed", () => t.stats.open === 0);
      } finally {
        await t.close();
      }
    });

    it("a slow client past the snapshot bound is cut off if its CRL is swept meanwhile (a short body, never a mix); one that reads nothing is disconnected", async () => {
      const t = await serve({ snapshotMs: 100, stallMs: 300 });
      try {
        const old = crl("aa", null, 1, 16_000_000);
        expect(await t.store.saveCrl(old)).toBe(true);
        await t.mirror.refresh();
        const slow = fetchRaw(`${t.url}/crl`, { paused: true });
        await slow.started;
        await new Promise((r) => setTimeout(r, 200)); // snapshot released
        slow.resume();
        await until("some of the body", () => slow.received() > 0);
        // Held again, then the CRL is replaced and its chunks swept before the client is done.
        const next = crl("aa", null, 2, 2_000);
        expect(await t.store.saveCrl(next)).toBe(true);
        const got = await slow.done;
        expect(got.headers["content-length"]).toBe(String(old.der.length));
        if (got.body.length === old.der.length) {
          // It was fast enough to finish before the sweep: then it has the whole old CRL.
          expect(got.body.equals(Buffer.from(old.der))).toBe(true);
        } else {
          expect(got.complete).toBe(false);
          expect(got.body.equals(Buffer.from(old.der).subarray(0, got.body.length))).toBe(true);
        }

        // A client that reads nothing: disconnected after stallMs, its snapshot closed.
        await t.mirror.refresh();
        const big = crl("aa", null, 3, 16_000_000);
        expect(await t.store.saveCrl(big)).toBe(true);
        await t.mirror.refresh();
        // Timed from the request: the server's stall timer starts after it (at its first full write).
        const t0 = Date.now();
        const stuck = fetchRaw(`${t.url}/crl`, { paused: true });
        await stuck.started;
        await until("the stuck client's snapshot", () => t.stats.open === 1);
        // Seen from the server: a paused client does not even read the connection's end.
        const connections = () => new Promise<number>((resolve) => t.server.getConnections((_e, n) => resolve(n)));
        await until("the stuck client's snapshot closed", () => t.stats.open === 0);
        for (let i = 0; i < 100 && (await connections()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
        expect(await connections()).toBe(0);
        expect(Date.now() - t0).toBeGreaterThanOrEqual(290); // stallMs, less a timer's rounding
        expect(Date.now() - t0).toBeLessThan(3_000);
      } finally {
        await t.close();
      }
    });
  });
});
