import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient } from "./harness/ca-client.js";
import { makeCsr } from "./harness/openssl.js";
import { fetchRoots, mtlsRequest, postApi, signBody, type ApiResponse } from "./harness/http.js";
import { startInProcess } from "./harness/in-process.js";
import { useInitialisedCa } from "./harness/initialised-ca.js";
import { STORAGE_BACKENDS } from "./harness/storage-backends.js";
import { ManualClock, systemClock } from "../src/core/clock.js";
import { createBootstrapToken } from "../src/attestation/bootstrap.js";
import { Secret } from "../src/core/secret.js";
import { createLogger } from "../src/log/logger.js";
import { certificateAuthorityFor, registrationAuthorityFor } from "../src/cli/api-service.js";
import { LiveIssuers } from "../src/issuance/live-issuers.js";
import type { CaStorage } from "../src/storage/ca-storage.js";
import { SqliteStore } from "../src/storage/sqlite/sqlite-store.js";
import { MIGRATIONS } from "../src/storage/migrations.js";
import Database from "better-sqlite3";

/**
 * Issue 15, the Idempotency-Key part: keys scoped to the verified token's identity (provisioner +
 * subject), an expired key as good as absent, concurrent retries serialised onto one
 * certificate, a live key reused for another request a 409 `conflict`; and the strict input that
 * goes with it: exactly one PEM block in `csr`, a ttl not under issuance.minTTL. Real daemon,
 * real HTTPS, CSRs from `openssl req`; the clock injected (in-process daemon) where a day must
 * pass, and one interleaving of two API processes driven through the RA on the real store.
 * What the store decides (keys shared by API processes, the racing retry) runs on both adapters
 * (issue 17): SQLite and a real PostgreSQL.
 */

const DAY = 24 * 3_600_000;

/** 8 requests at once, each on its own connection, as 8 retries of one cert-agent would come. */
function burst(n: number, send: () => Promise<ApiResponse>): Promise<ApiResponse[]> {
  return Promise.all(Array.from({ length: n }, send));
}

describe.each([
  ["one API process", "SQLite", ""],
  // Each API worker has its own in-process serialisation: across them, the store decides.
  ["two API workers (listen.apiWorkers: 2)", "SQLite", "apiWorkers: 2"],
  // The same across processes on PostgreSQL, the database replicas share.
  ["two API workers on PostgreSQL", "PostgreSQL", "apiWorkers: 2"],
] as const)("Idempotency-Key on POST /v1/sign, %s", (_name, backend, listen) => {
  const made = useInitialisedCa(backend, { listen });
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let roots: string;
  const sign = (token: string, csrPem: string, key?: string, extra: Record<string, unknown> = {}) =>
    postApi(`${d.apiUrl}/v1/sign`, roots, { token, body: signBody(csrPem, extra), ...(key !== undefined && { headers: { "idempotency-key": key } }) });

  beforeAll(async () => {
    ws = made.ws;
    d = await ws.start();
    roots = await fetchRoots(d.publicUrl);
  });
  afterAll(async () => {
    await d?.stop();
  });

  it("answers 8 concurrent requests with one token, CSR and key with the one certificate, round after round", async () => {
    const rounds = listen ? 5 : 10;
    for (let round = 0; round < rounds; round++) {
      const token = await ws.token(`race-${round}`, ["race.internal"]);
      const csr = makeCsr(ws.dir, `race-${round}`, { cn: "race.internal" });
      const before = await ws.storedRowCounts();
      const answers = await burst(8, () => sign(token, csr.csrPem, `race-key-${round}`));
      expect(answers.map((a) => a.status), `round ${round}: ${JSON.stringify(answers.map((a) => a.body))}`).toEqual(Array(8).fill(201));
      expect(new Set(answers.map((a) => a.body.serial)).size, `round ${round}`).toBe(1);
      expect(new Set(answers.map((a) => a.body.certificate)).size, `round ${round}`).toBe(1);
      const after = await ws.storedRowCounts();
      expect(after, `round ${round}`).toEqual({ certificates: before.certificates! + 1, used_tokens: before.used_tokens! + 1, idempotency_keys: before.idempotency_keys! + 1 });
    }
  });

  it("keeps the same key from two identities apart: each gets, and on retry gets again, its own certificate", async () => {
    const key = "shared-key-1";
    const alice = { token: await ws.token("alice", ["alice.internal"]), csr: makeCsr(ws.dir, "alice", { cn: "alice.internal" }) };
    const bob = { token: await ws.token("bob", ["bob.internal"]), csr: makeCsr(ws.dir, "bob", { cn: "bob.internal" }) };
    const a = await sign(alice.token, alice.csr.csrPem, key);
    expect(a.status, a.raw).toBe(201);
    const b = await sign(bob.token, bob.csr.csrPem, key);
    expect(b.status, b.raw).toBe(201);
    expect(b.body.serial).not.toBe(a.body.serial);
    // Each retry is answered from its own identity's row, never from the other's.
    const [a2, b2] = await Promise.all([sign(alice.token, alice.csr.csrPem, key), sign(bob.token, bob.csr.csrPem, key)]);
    expect([a2.status, a2.body.serial]).toEqual([201, a.body.serial]);
    expect([b2.status, b2.body.serial]).toEqual([201, b.body.serial]);

    // And at once: two identities' bursts with one key make two certificates, each burst one.
    const dave = { token: await ws.token("dave", ["dave.internal"]), csr: makeCsr(ws.dir, "dave", { cn: "dave.internal" }) };
    const erin = { token: await ws.token("erin", ["erin.internal"]), csr: makeCsr(ws.dir, "erin", { cn: "erin.internal" }) };
    const both = await Promise.all([burst(4, () => sign(dave.token, dave.csr.csrPem, "shared-key-2")), burst(4, () => sign(erin.token, erin.csr.csrPem, "shared-key-2"))]);
    for (const answers of both) {
      expect(answers.map((x) => x.status), JSON.stringify(answers.map((x) => x.body))).toEqual([201, 201, 201, 201]);
      expect(new Set(answers.map((x) => x.body.serial)).size).toBe(1);
    }
    expect(both[0]![0]!.body.serial).not.toBe(both[1]![0]!.body.serial);
  });

  it("refuses a live key reused with another CSR or ttl with 409 conflict, storing nothing and leaving the first answer in place", async () => {
    const key = "conflict-key-1";
    const token = await ws.token("carol", ["carol.internal"]);
    const first = makeCsr(ws.dir, "carol-1", { cn: "carol.internal" });
    const other = makeCsr(ws.dir, "carol-2", { cn: "carol.internal" });
    const r = await sign(token, first.csrPem, key);
    expect(r.status, r.raw).toBe(201);
    const before = await ws.storedRowCounts();
    for (const clash of [await sign(token, other.csrPem, key), await sign(token, first.csrPem, key, { ttl: "2h" })]) {
      expect(clash.status, clash.raw).toBe(409);
      expect(clash.body.error).toBe("conflict");
      expect(clash.body.message).toMatch(/Idempotency-Key/);
    }
    // The same identity with a fresh token reusing the live key is another request too.
    const token2 = await ws.token("carol", ["carol.internal"]);
    const third = await sign(token2, other.csrPem, key);
    expect([third.status, third.body?.error]).toEqual([409, "conflict"]);
    expect(await ws.storedRowCounts()).toEqual(before);
    const retry = await sign(token, first.csrPem, key);
    expect([retry.status, retry.body.serial]).toEqual([201, r.body.serial]);
    // token2 was not spent by its refusal: without the key it still gets a certificate.
    expect((await sign(token2, other.csrPem)).status).toBe(201);
  });
});

describe("strict input on POST /v1/sign and /v1/renew (real daemon)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  const sign = (token: string, body: string) => postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body });

  it.each<[string, (csr: string, other: string) => string]>([
    ["two PEM blocks", (csr, other) => csr + other],
    ["the same block twice", (csr) => csr + csr],
    ["text before the block", (csr) => `Certificate Request:\n    Data: ...\n${csr}`],
    ["text after the block", (csr) => `${csr}trailer\n`],
    ["a leading NUL", (csr) => `\0${csr}`],
    ["a trailing NUL", (csr) => `${csr}\0`],
    ["a byte-order mark", (csr) => `\ufeff${csr}`],
  ])("refuses a csr with %s: 400 bad_csr, nothing stored, the token not spent", async (_name, mangle) => {
    const token = await ws.token("strict", ["strict.internal"]);
    const csr = makeCsr(ws.dir, "strict", { cn: "strict.internal" });
    const other = makeCsr(ws.dir, "strict-other", { cn: "strict.internal" });
    const before = ws.rowCounts();
    const r = await sign(token, signBody(mangle(csr.csrPem, other.csrPem)));
    expect([r.status, r.body?.error], r.raw).toEqual([400, "bad_csr"]);
    expect(r.body.message).toMatch(/exactly one PEM/);
    expect(ws.rowCounts()).toEqual(before);
    const ok = await sign(token, signBody(csr.csrPem));
    expect(ok.status, ok.raw).toBe(201);
  });

  it("accepts whitespace around the one block (RFC 7468)", async () => {
    const token = await ws.token("spaced", ["spaced.internal"]);
    const csr = makeCsr(ws.dir, "spaced", { cn: "spaced.internal" });
    const r = await sign(token, signBody(`\r\n \t${csr.csrPem.replace(/\n/g, "\r\n")}\n\n  `));
    expect(r.status, r.raw).toBe(201);
  });

  it("refuses a renewal whose csr holds two PEM blocks, or junk, with 400 bad_csr and issues nothing", async () => {
    const held = await ca.issue("renewer");
    const rekey = makeCsr(ws.dir, "renewer-2");
    const other = makeCsr(ws.dir, "renewer-3");
    const before = ws.rowCounts();
    for (const csr of [rekey.csrPem + other.csrPem, `\0${rekey.csrPem}`, `${rekey.csrPem}x`]) {
      const r = await mtlsRequest(`${d.apiUrl}/v1/renew`, ca.roots, { identity: held.identity, body: JSON.stringify({ csr }) });
      expect([r.status, r.body?.error], r.raw).toEqual([400, "bad_csr"]);
    }
    expect(ws.rowCounts()).toEqual(before);
    const ok = await mtlsRequest(`${d.apiUrl}/v1/renew`, ca.roots, { identity: held.identity, body: JSON.stringify({ csr: rekey.csrPem }) });
    expect(ok.status, ok.raw).toBe(201);
  });

  it("refuses a ttl below issuance.minTTL (default 60s) with 400 bad_request, for sign and renew, without spending the token", async () => {
    const token = await ws.token("brief", ["brief.internal"]);
    const csr = makeCsr(ws.dir, "brief", { cn: "brief.internal" });
    const before = ws.rowCounts();
    const r = await sign(token, signBody(csr.csrPem, { ttl: "30s" }));
    expect([r.status, r.body?.error], r.raw).toEqual([400, "bad_request"]);
    expect(r.body.message).toMatch(/issuance\.minTTL/);
    expect(ws.rowCounts()).toEqual(before);
    const ok = await sign(token, signBody(csr.csrPem, { ttl: "60s" }));
    expect(ok.status, ok.raw).toBe(201);
    const held = ca.keep("brief", ok.body, csr.keyPath);
    const renew = await mtlsRequest(`${d.apiUrl}/v1/renew`, ca.roots, { identity: held.identity, body: JSON.stringify({ ttl: "1s" }) });
    expect([renew.status, renew.body?.error], renew.raw).toEqual([400, "bad_request"]);
  });
});

describe("an expired Idempotency-Key not yet pruned (in-process daemon, injected clock)", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("is as good as absent: a new token with that key gets a certificate, not 401 replayed", async () => {
    // Start in the past so that a day later (the key's window) is still inside the real-clock
    // validity of the API's serving certificate that node:tls checks. tickMs 0: no pruning runs.
    const clock = new ManualClock(new Date(Date.now() - 12 * 3_600_000));
    const { daemon } = await startInProcess(ws, clock);
    try {
      const roots = await fetchRoots(daemon.publicUrl);
      // Tokens minted on the daemon's clock, as a host whose clock agrees with the CA's would.
      const token = async () =>
        (
          await createBootstrapToken(
            { name: "bootstrap", maxTokenTtlMs: 3_600_000, leewayMs: 60_000 },
            daemon.dataDir.caKeys,
            daemon.dataDir.storage.operations,
            { subject: "stale", sans: ["stale.internal"], ttlMs: 300_000, audience: `${daemon.apiUrl}/v1/sign` },
            clock,
          )
        ).reveal();
      const send = (t: string, csrPem: string) =>
        postApi(`${daemon.apiUrl}/v1/sign`, roots, { token: t, body: signBody(csrPem), headers: { "idempotency-key": "nightly-enrol" } });

      const t1 = await token();
      const csr1 = makeCsr(ws.dir, "stale-1", { cn: "stale.internal" });
      const first = await send(t1, csr1.csrPem);
      expect(first.status, first.raw).toBe(201);

      clock.advance(DAY + 60_000); // the key's 24 h are over; its row is still there
      expect(ws.rowCounts().idempotency_keys).toBe(1);
      const csr2 = makeCsr(ws.dir, "stale-2", { cn: "stale.internal" });
      const t2 = await token();
      const second = await send(t2, csr2.csrPem);
      expect(second.status, second.raw).toBe(201);
      expect(second.body.serial).not.toBe(first.body.serial);
      // The stale row was replaced, not left beside a new one: a retry now gets the new certificate.
      expect(ws.rowCounts().idempotency_keys).toBe(1);
      const retry = await send(t2, csr2.csrPem);
      expect([retry.status, retry.body.serial]).toEqual([201, second.body.serial]);
    } finally {
      await daemon.close();
    }
  });
});

describe.each(STORAGE_BACKENDS)("a retry racing another API process's commit of the same request (the RA on the real store, %s)", (backend) => {
  const made = useInitialisedCa(backend);

  /**
   * listen.apiWorkers: each API process serialises its own retries, so across processes the store
   * decides. Process B's retry reads the store twice before it would sign (is the token spent? is
   * the key stored?); process A commits the same request between those reads. B's first read is
   * therefore answered as of before A's commit (a wrapper around B's request ports, the
   * IssuanceStore the RA reads: the one thing faked), its second as of after it: the interleaving
   * that gave 401 replayed when the key was read first (no key yet) and the token second (spent).
   * Each process opens the CA itself: its own connection to the SQLite file, its own pool on the
   * PostgreSQL database.
   */
  it("answers the retry with the one certificate, never 401 replayed", async () => {
    const ws = made.ws;
    const config = made.config();
    const log = createLogger({ level: "silent", format: "logfmt" });
    const audience = "https://ca.test/v1/sign";
    const closing: Array<() => Promise<void>> = [];
    const apiProcess = async (wrap: (r: CaStorage["requests"]) => CaStorage["requests"] = (r) => r) => {
      const dd = await made.open();
      const live = new LiveIssuers(dd.storage.issuers, dd.storage.issuerLifecycle, dd.caKeys, systemClock);
      const lineup = (await live.refresh())!;
      const ca = certificateAuthorityFor(config, lineup.current, systemClock);
      const { ra, rateLimits } = await registrationAuthorityFor(config, () => ca, { ...dd, storage: { ...dd.storage, requests: wrap(dd.storage.requests) } }, { clock: systemClock, log, audiences: () => [audience] });
      closing.push(() => rateLimits.close());
      return { ra, dd };
    };
    try {
      const a = await apiProcess();
      const token = (
        await createBootstrapToken(
          { name: "bootstrap", maxTokenTtlMs: 3_600_000, leewayMs: 60_000 },
          a.dd.caKeys,
          a.dd.storage.operations,
          { subject: "retry", sans: ["retry.internal"], ttlMs: 300_000, audience },
          systemClock,
        )
      ).reveal();
      const csr = makeCsr(ws.dir, "retry", { cn: "retry.internal" });
      const request = () => ({ token: new Secret(token), body: { csr: csr.csrPem }, idempotencyKey: "enrol-1" });

      let firstRead = true;
      const b = await apiProcess(
        (requests) =>
          new Proxy(requests, {
            get(target, prop) {
              const v = Reflect.get(target, prop, target) as unknown;
              if (typeof v !== "function") return v;
              if (prop !== "isTokenUsed" && prop !== "findIdempotency") return v.bind(target);
              return (...args: unknown[]) => {
                if (!firstRead) return v.apply(target, args);
                firstRead = false;
                return Promise.resolve(prop === "isTokenUsed" ? false : null); // as of before A's commit
              };
            },
          }),
      );
      const first = await a.ra.sign(request());
      const retry = await b.ra.sign(request());
      expect(firstRead, "B's first read was answered as of before A's commit").toBe(false);
      expect(retry.serial).toBe(first.serial);
      expect(retry.certificate).toBe(first.certificate);
      expect(await ws.storedRowCounts()).toEqual({ certificates: 1, used_tokens: 1, idempotency_keys: 1 });
    } finally {
      for (const close of closing) await close();
    }
  });
});

describe("schema migration v11 (idempotency keys scoped to the token's identity)", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("opens a v10 file read-only as it is, then drops its unscopable keys and scopes new ones", async () => {
    const path = `${ws.dir}/v10.db`;
    const db = new Database(path);
    db.pragma("foreign_keys = OFF");
    db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
    for (const m of MIGRATIONS.filter((m) => m.version <= 10)) {
      db.exec(m.sqlite);
      db.prepare("INSERT INTO schema_migrations VALUES (?, ?, 0)").run(m.version, m.name);
    }
    db.prepare("INSERT INTO idempotency_keys (key, request_hash, token_id, serial, expires_at, created_at) VALUES ('k', 'h', 'bootstrap:j', 'ab', ?, 0)").run(Date.now() + DAY);
    db.close();

    // `fleetca list` and the daemon's start-up probe open read-only before anything migrates.
    const ro = new SqliteStore(path, { readonly: true });
    ro.close();
    const rw = new SqliteStore(path);
    try {
      expect(rw.db.prepare("SELECT MAX(version) FROM schema_migrations").pluck().get()).toBe(MIGRATIONS.at(-1)!.version);
      expect(rw.db.prepare("SELECT name FROM schema_migrations WHERE version = 11").pluck().get()).toMatch(/idempotency keys scoped/);
      expect(rw.db.prepare("SELECT COUNT(*) FROM idempotency_keys").pluck().get()).toBe(0);
      const pk = rw.db.prepare("SELECT name FROM pragma_table_info('idempotency_keys') WHERE pk > 0 ORDER BY pk").pluck().all();
      expect(pk).toEqual(["provisioner", "subject", "key"]);
    } finally {
      rw.close();
    }
  });
});
