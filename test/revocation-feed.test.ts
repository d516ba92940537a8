import { describe, expect, it } from "vitest";
import type { RevocationReason } from "../src/core/revocation-reason.js";
import type { SerialHex } from "../src/core/serial.js";
import { createLogger } from "../src/log/logger.js";
import { RevocationFeed } from "../src/revocation/revocation-feed.js";
import type { RevocationEvent, RevocationLog } from "../src/storage/ports.js";
import { STORAGE_BACKENDS, useStorageBackend } from "./harness/storage-backends.js";

const silent = createLogger({ level: "silent", format: "logfmt" });

/**
 * The real log, each read's answer held back while the test holds answers: the read itself
 * happens at once, its answer arrives when the test lets it go, as from a database a network
 * round trip away. Polls then overlap for certain, not only when a timer wins a race on a busy
 * machine; answered(n) resolves once n reads have their answer from the database.
 */
function heldBack(log: RevocationLog): RevocationLog & { reads: number; hold(): void; release(): void; answered(n: number): Promise<void> } {
  let gate: Promise<void> = Promise.resolve();
  let open = () => {};
  let answers = 0;
  const waiting: Array<{ n: number; resolve: () => void }> = [];
  const wrapped = {
    reads: 0,
    latestRevocationSeq: () => log.latestRevocationSeq(),
    revocationsAfter: async (seq: number, limit: number) => {
      wrapped.reads++;
      const events = await log.revocationsAfter(seq, limit);
      answers++;
      for (const w of waiting.filter((w) => w.n <= answers)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
      await gate;
      return events;
    },
    hold() {
      gate = new Promise((resolve) => (open = resolve));
    },
    release() {
      open();
      gate = Promise.resolve();
    },
    answered(n: number): Promise<void> {
      return n <= answers ? Promise.resolve() : new Promise((resolve) => waiting.push({ n, resolve }));
    },
  };
  return wrapped;
}

describe.each(STORAGE_BACKENDS)("RevocationFeed over the asynchronous RevocationLog on %s", (name) => {
  const backend = useStorageBackend(name);

  async function setUp(certificates: number) {
    const storage = await backend.fresh();
    await storage.issuers.addIssuer({ keyId: "aa", role: "intermediate", keyName: "aa", parentKeyId: null, der: new Uint8Array([0]), notBefore: new Date(0), notAfter: new Date(1e13), status: "active", createdAt: new Date(0), revokedAt: null, revocationReason: null, activatedAt: null });
    const serials: SerialHex[] = [];
    for (let i = 1; i <= certificates; i++) {
      const serial = i.toString(16).padStart(4, "0") as SerialHex;
      const outcome = await storage.requests.commitIssuance({
        certificate: {
          serial, issuerKeyId: "aa", sans: { dns: ["x.test"], ip: [], uri: [] }, subjectCommonName: null,
          notBefore: new Date(0), notAfter: new Date(1e13), der: Uint8Array.of(0), provisioner: "bootstrap", tokenId: null,
          status: "valid", revokedAt: null, revocationReason: null, createdAt: new Date(0), renewedFrom: null, crlShard: i % 2,
        },
      });
      expect(outcome).toBe("committed");
      serials.push(serial);
    }
    const revoke = async (serial: SerialHex) =>
      expect((await storage.requests.revokeCertificate(serial, new Date(1_000), 1 as RevocationReason)).outcome).toBe("revoked");
    return { storage, serials, revoke };
  }

  it("the port answers the log in seq order after a position, and the CRL scopes it touched", async () => {
    const { storage, serials, revoke } = await setUp(4);
    const log = storage.revocationLog;
    const crls = storage.crls;
    expect(await log.latestRevocationSeq()).toBe(0);
    for (const s of [serials[2]!, serials[0]!, serials[1]!]) await revoke(s);
    const seq = await log.latestRevocationSeq();
    expect(await crls.latestRevocationSeq()).toBe(seq);
    const all = await log.revocationsAfter(0, 10);
    expect(all.map((e) => [e.seq, e.serial, e.crlShard])).toEqual([
      [seq - 2, serials[2], 1],
      [seq - 1, serials[0], 1],
      [seq, serials[1], 0],
    ]);
    expect((await log.revocationsAfter(seq - 2, 1)).map((e) => e.serial)).toEqual([serials[0]]);
    expect(await log.revocationsAfter(seq, 10)).toEqual([]);
    expect((await crls.shardsRevokedAfter("aa", seq - 1)).sort()).toEqual([0]);
    expect((await crls.shardsRevokedAfter("aa", 0)).sort()).toEqual([0, 1]);
    expect(await crls.crlShards("aa")).toEqual([]);
    await crls.registerCrlShards("aa", [2, 0, 1]);
    await crls.registerCrlShards("aa", [1]);
    expect(await crls.crlShards("aa")).toEqual([0, 1, 2]);
  });

  it("overlapping polls deliver every revocation exactly once, in order, and a poll resolves only after what was committed before it", async () => {
    const { storage, serials, revoke } = await setUp(6);
    const log = heldBack(storage.revocationLog);
    const feed = new RevocationFeed(log, 0, silent);
    const delivered: RevocationEvent[][] = [];
    feed.subscribe((events) => delivered.push(events));
    await revoke(serials[0]!); // before start: not reported
    await feed.start();

    await revoke(serials[1]!);
    log.hold();
    const first = feed.poll();
    // While the first read is in flight (it has read, its answer is on the way): a commit,
    // and two more polls, as a revocation's poll and the timer's would come.
    await log.answered(1);
    await revoke(serials[2]!);
    const second = feed.poll();
    await revoke(serials[3]!);
    const third = feed.poll();
    log.release();
    await second;
    // The second poll was asked for after serials[2] and [3] were committed: they are delivered by now.
    expect(delivered.flat().map((e) => e.serial)).toEqual([serials[1], serials[2], serials[3]]);
    await Promise.all([first, third]);
    // One read for the first poll, one more for the two asked meanwhile.
    expect(log.reads).toBe(2);

    // Committed first (a PostgreSQL revocation is a round trip; SQLite's commits within the call),
    // then three polls at once: each revocation still arrives exactly once.
    // One after the other: two at once take their places in the log in commit order, which on
    // PostgreSQL need not be the order they were asked in (it failed once so in CI).
    await revoke(serials[4]!);
    await revoke(serials[5]!);
    await Promise.all([feed.poll(), feed.poll(), feed.poll()]);
    const seqs = delivered.flat().map((e) => e.seq);
    expect(delivered.flat().map((e) => e.serial)).toEqual(serials.slice(1));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    await feed.poll();
    expect(delivered.flat()).toHaveLength(5);
    await feed.stop();
  });

  it("reports nothing before start(); stop() waits for the read under way, and later polls read nothing", async () => {
    const { storage, serials, revoke } = await setUp(2);
    const log = heldBack(storage.revocationLog);
    const feed = new RevocationFeed(log, 0, silent);
    const delivered: RevocationEvent[] = [];
    feed.subscribe((events) => delivered.push(...events));
    await revoke(serials[0]!);
    await feed.poll();
    expect([delivered.length, log.reads]).toEqual([0, 0]);
    await feed.start();
    await revoke(serials[1]!);
    log.hold();
    const polling = feed.poll();
    await log.answered(1);
    let stopped = false;
    const stopping = feed.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(stopped).toBe(false);
    log.release();
    await Promise.all([polling, stopping]);
    expect(delivered.map((e) => e.serial)).toEqual([serials[1]]);
    await feed.poll();
    expect(log.reads).toBe(1);
  });
});
