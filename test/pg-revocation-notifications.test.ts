import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REVOCATION_CHANNEL, RevocationNotifications } from "../src/storage/postgres/pg-revocation-notifications.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";
import { eventually } from "./harness/eventually.js";

/**
 * LISTEN/NOTIFY for revocations (issue 17): a replica hears of another's revocation when it
 * commits, not before; a lost session is re-established, and each (re)connection reads once to
 * catch up on what was announced while nobody listened.
 */
describe("revocation notifications", () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    await db?.stop();
  });

  const notify = async (payload: string, commit = true): Promise<void> => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query("BEGIN");
      await c.query("SELECT pg_notify($1, $2)", [REVOCATION_CHANNEL, payload]);
      await c.query(commit ? "COMMIT" : "ROLLBACK");
    } finally {
      await c.end();
    }
  };

  it("delivers committed notifications only, survives the database going away, and catches up on reconnection", async () => {
    let calls = 0;
    const log = pino({ level: "silent" });
    const n = new RevocationNotifications({ connection: { connectionString: db.url }, onRevocation: () => calls++, log });
    n.start();
    try {
      // The catch-up read of the first connection.
      await eventually(10_000, "listening", async () => n.listening && calls, (c) => c === 1);
      await notify("1");
      await eventually(5_000, "a committed revocation's notification", async () => calls, (c) => c === 2);
      // A rolled-back transaction's notification is never delivered (NOTIFY is transactional).
      await notify("2", false);
      await notify("3");
      await eventually(5_000, "the next committed one", async () => calls, (c) => c === 3);
      await new Promise((r) => setTimeout(r, 300));
      expect(calls).toBe(3);

      await db.pause();
      await eventually(10_000, "the lost session noticed", async () => n.listening, (l) => !l);
      const before = calls;
      await db.resume();
      // Reconnected without help, with one catch-up read for what it may have missed.
      await eventually(30_000, "listening again", async () => n.listening && calls, (c) => c === before + 1);
      await notify("4");
      await eventually(5_000, "notifications after the outage", async () => calls, (c) => c === before + 2);
    } finally {
      await n.stop();
    }
    expect(n.listening).toBe(false);
  }, 90_000);
});
