import { X509Certificate } from "node:crypto";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Secret } from "../src/core/secret.js";
import { newPassphraseKek } from "../src/signing/kek.js";
import { openPgKek } from "../src/storage/postgres/pg-key-store.js";
import { openPgPool } from "../src/storage/postgres/pg-pool.js";
import { CaClient } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { CaWorkspace, type CliResult } from "./harness/fleetca-process.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";

/**
 * `fleetca rotate kek` on a PostgreSQL CA: the ca_keys rows re-wrapped and kek_params version 2
 * inserted in one transaction, through the real CLI, against a real cluster. Then the old
 * passphrase opens nothing, the new one opens every key (the same keys: the issuers' certificates
 * match) and a replica started with it issues; two rotations at once leave exactly one winner;
 * a rotation whose connection dies mid-way (blocked on a row lock this test holds, after it has
 * re-wrapped the other rows) leaves the old state whole.
 */
const OLD = "the passphrase the CA was made with";
const NEW = "the passphrase after the rotation";
const PUBLIC_URL = "http://ca.pgkek.test";
/** Explicit, so `fleetca token create` knows the audience with no daemon running. */
const API_URL = "https://ca.pgkek.test:8443";

/** A one-line refusal: exit 1, a single `fleetca: …` line on stderr, nothing on stdout. */
function expectRefused(r: CliResult, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stdout).toBe("");
  expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^fleetca: /);
  expect(r.stderr).toMatch(pattern);
}

function expectOk(r: CliResult): void {
  expect(r.code, r.stderr).toBe(0);
}

describe("fleetca rotate kek on PostgreSQL", () => {
  let db: TestPostgres;
  let n = 0;
  const cleanup: Array<() => Promise<void> | void> = [];
  /** Every CLI result of the file: none may carry a passphrase. */
  const outputs: CliResult[] = [];

  beforeAll(async () => {
    db = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
    await db?.stop();
  });

  /** A fresh database, a workspace configured for it, `fleetca init` through the CLI. */
  const pgCa = async (): Promise<{ ws: CaWorkspace; url: string; sql: pg.Pool }> => {
    const url = await db.createDatabase(`kek_${++n}`);
    const ws = new CaWorkspace({ passphrase: OLD, extraConfig: `storage: { type: postgres, url: "${url}" }\npublicUrl: ${PUBLIC_URL}\napiUrl: ${API_URL}\n` });
    cleanup.push(() => ws.remove());
    // The adapter's own pool (its BIGINT parsing is what the audit verifier expects). Idle
    // connections break when a test stops the server: not an error of the test.
    const sql = openPgPool({ url, pool: 3 }, () => {});
    cleanup.push(() => sql.end());
    const init = await cli(ws, ["init"]);
    expect(init.code, init.stderr).toBe(0);
    return { ws, url, sql };
  };
  const cli = async (ws: CaWorkspace, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> => {
    const r = await ws.cli(args, env);
    outputs.push(r);
    return r;
  };
  /** A 0600 file holding `text`, as an operator would give --new-passphrase-file. */
  const passphraseFile = (ws: CaWorkspace, name: string, text: string): string => {
    const path = join(ws.dir, name);
    writeFileSync(path, `${text}\n`, { mode: 0o600 });
    return path;
  };
  const rows = async (sql: pg.Pool): Promise<Map<string, string>> =>
    new Map((await sql.query<{ name: string; record: string }>("SELECT name, record FROM ca_keys ORDER BY name")).rows.map((r) => [r.name, r.record]));
  const kekVersions = async (sql: pg.Pool): Promise<number[]> =>
    (await sql.query<{ v: number }>("SELECT version::int AS v FROM kek_params ORDER BY version")).rows.map((r) => r.v);
  /** `fleetca token create`: opens the CA keys from the database with the passphrase given. */
  const tokenWith = (ws: CaWorkspace, passphrase: string): Promise<CliResult> =>
    cli(ws, ["token", "create", "--sub", "probe", "--san", "probe.internal"], { FLEETCA_PASSPHRASE: passphrase });

  it("re-wraps every key in one go: the old passphrase opens nothing, the new one every key (the same keys), a replica started with it issues; the event is in the log", async () => {
    const { ws, sql } = await pgCa();
    const before = await rows(sql);
    expect(before.size).toBeGreaterThanOrEqual(3);
    // A replica running through the rotation keeps the keys it unwrapped.
    const running = await ws.start();
    cleanup.push(() => running.stop());
    const ca = await new CaClient(ws, running.apiUrl, running.publicUrl).init();
    await ca.issue("before");

    const f = passphraseFile(ws, "new-pass", NEW);
    const r = await cli(ws, ["rotate", "kek", "--new-passphrase-file", f]);
    expect(r.code, r.stderr).toBe(0);
    for (const name of before.keys()) expect(r.stdout).toContain(`re-wrapped ${name}\n`);
    expect(r.stdout).toMatch(new RegExp(`rotated KEK version 1 \\(scrypt-[0-9a-f]+\\) to KEK version 2 \\(scrypt-[0-9a-f]+\\) in postgres://.*: ${before.size} keys re-wrapped in one transaction`));
    expect(r.stdout).toMatch(/running replicas keep serving with the keys they hold.*restart every replica with the new passphrase/);
    expect(await kekVersions(sql)).toEqual([1, 2]);

    // Each row: a new DEK envelope naming KEK version 2; the sealed private key and public key byte for byte.
    const after = await rows(sql);
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [name, text] of after) {
      const a = JSON.parse(text);
      const b = JSON.parse(before.get(name)!);
      expect(a.kek.version, name).toBe(2);
      expect(a.kek.id).not.toBe(b.kek.id);
      expect(a.dek).not.toEqual(b.dek);
      expect(a.key).toEqual(b.key);
      expect(a.publicKeySpki).toBe(b.publicKeySpki);
    }

    // The old passphrase: a one-line refusal naming the version it should have been.
    expectRefused(await tokenWith(ws, OLD), /wrong passphrase: cannot unlock the CA keys in the database \(KEK version 2, since /);
    await expect(openPgKek(sql, new Secret(OLD), { create: false, now: new Date() })).rejects.toThrow(/wrong passphrase/);
    // The new one opens every key, and each is the key of its issuer's certificate.
    const { keys } = await openPgKek(sql, new Secret(NEW), { create: false, now: new Date() });
    for (const name of after.keys()) await keys.load(name);
    const issuers = (await sql.query<{ key_name: string; der: Buffer }>("SELECT key_name, der FROM issuers")).rows;
    expect(issuers.length).toBe(2);
    for (const i of issuers) {
      const signer = await keys.load(i.key_name);
      const certSpki = new X509Certificate(i.der).publicKey.export({ type: "spki", format: "der" });
      expect(Buffer.from(signer.publicKeySpki).equals(certSpki), i.key_name).toBe(true);
    }
    expectOk(await tokenWith(ws, NEW));

    // The replica that was running still issues (its keys are in memory); one restarted with the
    // new passphrase loads them from the rows and issues too, under the same intermediate.
    ws.env.FLEETCA_PASSPHRASE = NEW;
    await ca.issue("during");
    await running.stop();
    const restarted = await ws.start();
    cleanup.push(() => restarted.stop());
    const ca2 = await new CaClient(ws, restarted.apiUrl, restarted.publicUrl).init();
    expect(ca2.intermediatePem).toBe(ca.intermediatePem);
    const issued = await ca2.issue("after");
    expect(new X509Certificate(issued.certificate).verify(new X509Certificate(ca.intermediatePem).publicKey)).toBe(true);

    // The issuance log in the database holds the event, and still verifies (its audit key was
    // re-wrapped, not replaced: audit verify trusts a key only when its ca_keys row agrees).
    const events = (await sql.query<{ entry: Buffer }>("SELECT entry FROM audit_log WHERE kind = 'event' ORDER BY idx")).rows.map((e) => JSON.parse(e.entry.toString("utf8")));
    const rotated = events.filter((e) => e.event === "kek_rotated");
    expect(rotated).toHaveLength(1);
    expect(rotated[0].details).toEqual({ from: "version 1", to_version: 2, keys: before.size, dev_key_destroyed: false });
    const verify = await cli(ws, ["audit", "verify", "--json"]);
    expect(verify.code, verify.stderr).toBe(0);
    const verified = JSON.parse(verify.stdout) as { ok: boolean; entries: number; treeHeads: number };
    expect(verified.ok).toBe(true);
    expect(verified.entries).toBeGreaterThan(0);
    await restarted.stop();
  }, 180_000);

  it("refuses without changing anything: the same passphrase, no current passphrase, no new one, a new-passphrase file others can read", async () => {
    const { ws, sql } = await pgCa();
    const before = await rows(sql);
    expectRefused(await cli(ws, ["rotate", "kek", "--new-passphrase-file", passphraseFile(ws, "same", OLD)]), /the new passphrase is the same as the current one/);
    expectRefused(await cli(ws, ["rotate", "kek", "--new-passphrase-file", passphraseFile(ws, "new-1", NEW)], { FLEETCA_PASSPHRASE: "" }), /protected by a passphrase: give the current one/);
    expectRefused(await cli(ws, ["rotate", "kek"], { FLEETCA_NEW_PASSPHRASE: "" }), /no new passphrase: give --new-passphrase-file/);
    const open = passphraseFile(ws, "open", NEW);
    chmodSync(open, 0o644);
    expectRefused(await cli(ws, ["rotate", "kek", "--new-passphrase-file", open]), /readable by group or others/);
    expectRefused(await cli(ws, ["rotate", "kek", "--new-passphrase-file", passphraseFile(ws, "new-2", NEW)], { FLEETCA_PASSPHRASE: "not the passphrase" }), /wrong passphrase/);
    expect(await kekVersions(sql)).toEqual([1]);
    expect(await rows(sql)).toEqual(before);
  }, 120_000);

  it("two rotations at once from two processes: exactly one wins, the other says the KEK changed meanwhile, the keys open with the winner's passphrase only", async () => {
    const { ws, sql } = await pgCa();
    const a = passphraseFile(ws, "pass-a", "winner candidate A");
    const b = passphraseFile(ws, "pass-b", "winner candidate B");
    // Both must reach the transaction before either commits: this connection holds a SHARE lock
    // on kek_params (which conflicts with the rotation's EXCLUSIVE one, not with the plain read
    // that opens the current KEK) until both wait for it.
    const holder = await sql.connect();
    let both: Promise<CliResult[]>;
    try {
      await holder.query("BEGIN; LOCK TABLE kek_params IN SHARE MODE");
      both = Promise.all([cli(ws, ["rotate", "kek", "--new-passphrase-file", a]), cli(ws, ["rotate", "kek", "--new-passphrase-file", b])]);
      await eventually(
        30_000,
        "both rotations wait for the lock on kek_params",
        async () => (await sql.query("SELECT 1 FROM pg_locks WHERE relation = 'kek_params'::regclass AND mode = 'ExclusiveLock' AND NOT granted")).rowCount,
        (waiting) => waiting === 2,
      );
      await holder.query("COMMIT");
    } finally {
      holder.release();
    }
    const results = await both;
    const won = results.filter((r) => r.code === 0);
    const lost = results.filter((r) => r.code !== 0);
    expect(won, results.map((r) => r.stderr).join("\n")).toHaveLength(1);
    expectRefused(lost[0]!, /the KEK changed meanwhile: kek_params' newest version is 2, not version 1 this rotation started from/);
    const winner = results[0]!.code === 0 ? "winner candidate A" : "winner candidate B";
    const loser = winner.endsWith("A") ? "winner candidate B" : "winner candidate A";

    expect(await kekVersions(sql)).toEqual([1, 2]);
    const { keys } = await openPgKek(sql, new Secret(winner), { create: false, now: new Date() });
    for (const name of (await rows(sql)).keys()) await keys.load(name);
    for (const record of (await rows(sql)).values()) expect(JSON.parse(record).kek.version).toBe(2);
    await expect(openPgKek(sql, new Secret(loser), { create: false, now: new Date() })).rejects.toThrow(/wrong passphrase/);
    await expect(openPgKek(sql, new Secret(OLD), { create: false, now: new Date() })).rejects.toThrow(/wrong passphrase/);
    const events = (await sql.query<{ entry: Buffer }>("SELECT entry FROM audit_log WHERE kind = 'event'")).rows.filter((e) => JSON.parse(e.entry.toString("utf8")).event === "kek_rotated");
    expect(events).toHaveLength(1);
  }, 120_000);

  it("a key generated while a rotation holds kek_params waits for it, then is refused, not left wrapped by the retired KEK", async () => {
    const { sql } = await pgCa();
    const { keys } = await openPgKek(sql, new Secret(OLD), { create: false, now: new Date() });
    // This connection plays the rotation: the same lock, then version 2 recorded and committed.
    const rotation = await sql.connect();
    try {
      await rotation.query("BEGIN; LOCK TABLE kek_params IN EXCLUSIVE MODE");
      let settled = false;
      const late = keys.generate("late-key", "ecdsa-p256").finally(() => {
        settled = true;
      });
      late.catch(() => {});
      await eventually(
        30_000,
        "generate waits for the rotation's lock",
        async () => (await sql.query("SELECT 1 FROM pg_locks WHERE relation = 'kek_params'::regclass AND NOT granted")).rowCount,
        (waiting) => waiting === 1,
      );
      expect(settled).toBe(false);
      await rotation.query("INSERT INTO kek_params (version, params, created_at) VALUES (2, $1, 0)", [newPassphraseKek(new Secret(NEW), 2, null).paramsFile]);
      await rotation.query("COMMIT");
      await expect(late).rejects.toThrow(/cannot create key late-key: the KEK was rotated since this process started/);
    } finally {
      rotation.release();
    }
    expect(await keys.has("late-key")).toBe(false);
    expect(keys.kekCurrent).toBe(false);
  }, 120_000);

  /**
   * Holds a row lock on the last key (by name) so the rotation, which updates the rows in name
   * order, blocks at the last UPDATE with every other row already re-wrapped in its transaction;
   * `kill` then ends its connection; the lock is released and the outcome returned.
   */
  const rotationKilledMidway = async (ws: CaWorkspace, sql: pg.Pool, kill: (pid: number) => Promise<void>): Promise<CliResult> => {
    const holder = await sql.connect();
    holder.on("error", () => {});
    let rotation: Promise<CliResult> | undefined;
    try {
      await holder.query("BEGIN; SELECT 1 FROM ca_keys WHERE name = (SELECT max(name) FROM ca_keys) FOR SHARE");
      rotation = cli(ws, ["rotate", "kek", "--new-passphrase-file", passphraseFile(ws, `new-${Date.now()}`, NEW)]);
      const { seen: pid } = await eventually(
        30_000,
        "the rotation waits at its last UPDATE",
        async () => (await sql.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE ca_keys%'")).rows[0]?.pid ?? null,
        (p) => p !== null,
      );
      // The other rows are re-wrapped already, in the rotation's uncommitted transaction.
      await kill(pid!);
      return await rotation;
    } finally {
      await holder.query("ROLLBACK").catch(() => {});
      holder.release(true);
      await rotation?.catch(() => {});
    }
  };

  it("a rotation whose connection is terminated mid-way changes nothing: the old passphrase still opens every key, kek_params stays at version 1", async () => {
    const { ws, sql } = await pgCa();
    const before = await rows(sql);
    const r = await rotationKilledMidway(ws, sql, async (pid) => {
      await sql.query("SELECT pg_terminate_backend($1)", [pid]);
    });
    expectRefused(r, /the database connection failed during the rotation \(SQLSTATE 57P01\); nothing changed \(PostgreSQL rolled the transaction back\)/);
    expect(await kekVersions(sql)).toEqual([1]);
    expect(await rows(sql)).toEqual(before);
    expectOk(await tokenWith(ws, OLD));
    expectRefused(await tokenWith(ws, NEW), /wrong passphrase/);
    // And a rotation run again afterwards goes through.
    const again = await cli(ws, ["rotate", "kek", "--new-passphrase-file", passphraseFile(ws, "new-again", NEW)]);
    expect(again.code, again.stderr).toBe(0);
    expect(await kekVersions(sql)).toEqual([1, 2]);
    expectOk(await tokenWith(ws, NEW));
  }, 120_000);

  it("a rotation during which the database stops (as a crash would) changes nothing once it is back", async () => {
    const { ws, sql } = await pgCa();
    const before = await rows(sql);
    const r = await rotationKilledMidway(ws, sql, () => db.pause());
    await db.resume();
    expectRefused(r, /the database connection failed during the rotation \(.+\); nothing changed/);
    expect(await kekVersions(sql)).toEqual([1]);
    expect(await rows(sql)).toEqual(before);
    expectOk(await tokenWith(ws, OLD));
  }, 120_000);

  it("no passphrase, old or new, ever appears in what the CLI printed", () => {
    expect(outputs.length).toBeGreaterThan(10);
    for (const r of outputs) {
      for (const secret of [OLD, NEW, "winner candidate A", "winner candidate B"]) {
        expect(r.stdout).not.toContain(secret);
        expect(r.stderr).not.toContain(secret);
      }
    }
  });
});
