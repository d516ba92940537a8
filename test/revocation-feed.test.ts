import { afterAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { RevocationReason } from "../src/core/revocation-reason.js";
import type { SerialHex } from "../src/core/serial.js";
import { createLogger } from "../src/log/logger.js";
import { RevocationFeed } from "../src/revocation/revocation-feed.js";
import type { RevocationEvent, RevocationLog } from "../src/storage/ports.js";
import { SqliteRevocationPorts } from "../src/storage/sqlite/sqlite-revocation-ports.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";

const silent = createLogger({ level: "silent", format: "logfmt" });

describe("RevocationFeed over the asynchronous RevocationLog (SQLite)", () => {
  const dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "fleetca-feed-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function setUp(certificates: number) {
    const store = new SqliteStore(join(dir, `${randomBytes(4).toString("hex")}.db`));
    store.addIssuer({ keyId: "aa", role: "intermediate", keyName: "aa", parentKeyId: null, der: new Uint8Array([0]), notBefore: new Date(0), notAfter: new Date(1e13), status: "active", createdAt: new Date(0), revokedAt: null, revocationReason: null, activatedAt: null });
    const serials: SerialHex[] = [];
    for (let i = 1; i <= certificates; i++) {
      const serial = i.toString(16).padStart(4, "0") as SerialHex;
      const outcome = await store.commitIssuance({
        certificate: {
          serial, issuerKeyId: "aa", sans: { dns: ["x.test"], ip: [], uri: [] }, subjectCommonName: null,
          notBefore: new Date(0), notAfter: new Date(1e13), der: Uint8Array.of(0), provisioner: "bootstrap", tokenId: null,
          status: "valid", revokedAt: null, revocationReason: null, createdAt: new Date(0), renewedFrom: null, crlShard: i % 2,
        },
      });
      expect(outcome).toBe("committed");
      serials.push(serial);
    }
    const revoke = (serial: SerialHex) => expect(store.revokeCertificate(serial, new Date(1_000), 1 as RevocationReason).outcome).toBe("revoked");
    return { store, serials, revoke };
  }

  /**
   * The real log, each read answered `delayMs` after it was made (the read itself happens at
   * once): a database a network round trip away, so polls overlap as they would over PostgreSQL.
   */
  function slow(log: RevocationLog, delayMs: number): RevocationLog & { reads: number } {
    const wrapped = {
      reads: 0,
      latestRevocationSeq: () => log.latestRevocationSeq(),
      revocationsAfter: async (seq: number, limit: number) => {
        wrapped.reads++;
        const events = await log.revocationsAfter(seq, limit);
        await new Promise((r) => setTimeout(r, delayMs));
        return events;
      },
    };
    return wrapped;
  }

  it("the port answers the log in seq order after a position, and the CRL scopes it touched", async () => {
    const { store, serials, revoke } = await setUp(4);
    try {
      const ports = new SqliteRevocationPorts(store);
      expect(await ports.latestRevocationSeq()).toBe(0);
      for (const s of [serials[2]!, serials[0]!, serials[1]!]) revoke(s);
      const seq = await ports.latestRevocationSeq();
      const all = await ports.revocationsAfter(0, 10);
      expect(all.map((e) => [e.seq, e.serial, e.crlShard])).toEqual([
        [seq - 2, serials[2], 1],
        [seq - 1, serials[0], 1],
        [seq, serials[1], 0],
      ]);
      expect((await ports.revocationsAfter(seq - 2, 1)).map((e) => e.serial)).toEqual([serials[0]]);
      expect(await ports.revocationsAfter(seq, 10)).toEqual([]);
      expect((await ports.shardsRevokedAfter("aa", seq - 1)).sort()).toEqual([0]);
      expect((await ports.shardsRevokedAfter("aa", 0)).sort()).toEqual([0, 1]);
      expect(await ports.crlShards("aa")).toEqual([]);
      await ports.registerCrlShards("aa", [2, 0, 1]);
      await ports.registerCrlShards("aa", [1]);
      expect(await ports.crlShards("aa")).toEqual([0, 1, 2]);
    } finally {
      store.close();
    }
  });

  it("overlapping polls deliver every revocation exactly once, in order, and a poll resolves only after what was committed before it", async () => {
    const { store, serials, revoke } = await setUp(6);
    try {
      const log = slow(new SqliteRevocationPorts(store), 30);
      const feed = new RevocationFeed(log, 0, silent);
      const delivered: RevocationEvent[][] = [];
      feed.subscribe((events) => delivered.push(events));
      revoke(serials[0]!); // before start: not reported
      await feed.start();

      revoke(serials[1]!);
      const first = feed.poll();
      // While the first read is in flight (it has read, its answer is on the way): a commit,
      // and two more polls, as a revocation's poll and the timer's would come.
      await new Promise((r) => setTimeout(r, 5));
      revoke(serials[2]!);
      const second = feed.poll();
      revoke(serials[3]!);
      const third = feed.poll();
      await second;
      // The second poll was asked for after serials[2] and [3] were committed: they are delivered by now.
      expect(delivered.flat().map((e) => e.serial)).toEqual([serials[1], serials[2], serials[3]]);
      await Promise.all([first, third]);
      // One read for the first poll, one more for the two asked meanwhile.
      expect(log.reads).toBe(2);

      revoke(serials[4]!);
      revoke(serials[5]!);
      await Promise.all([feed.poll(), feed.poll(), feed.poll()]);
      const seqs = delivered.flat().map((e) => e.seq);
      expect(delivered.flat().map((e) => e.serial)).toEqual(serials.slice(1));
      expect(new Set(seqs).size).toBe(seqs.length);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      await feed.poll();
      expect(delivered.flat()).toHaveLength(5);
      await feed.stop();
    } finally {
      store.close();
    }
  });

  it("reports nothing before start(); stop() waits for the read under way, and later polls read nothing", async () => {
    const { store, serials, revoke } = await setUp(2);
    try {
      const log = slow(new SqliteRevocationPorts(store), 30);
      const feed = new RevocationFeed(log, 0, silent);
      const delivered: RevocationEvent[] = [];
      feed.subscribe((events) => delivered.push(...events));
      revoke(serials[0]!);
      await feed.poll();
      expect([delivered.length, log.reads]).toEqual([0, 0]);
      await feed.start();
      revoke(serials[1]!);
      const polling = feed.poll();
      await new Promise((r) => setTimeout(r, 5));
      let stopped = false;
      const stopping = feed.stop().then(() => (stopped = true));
      await new Promise((r) => setTimeout(r, 0));
      expect(stopped).toBe(false);
      await Promise.all([polling, stopping]);
      expect(delivered.map((e) => e.serial)).toEqual([serials[1]]);
      await feed.poll();
      expect(log.reads).toBe(1);
    } finally {
      store.close();
    }
  });
});
