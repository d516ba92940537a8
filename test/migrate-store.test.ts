import { cpSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BulkClient, inParallel } from "./harness/bulk.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { CaWorkspace, type CliResult, type DaemonProcess } from "./harness/fleetca-process.js";
import { signBody } from "./harness/http.js";
import { makeCsr, opensslAsync } from "./harness/openssl.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";

/**
 * `fleetca migrate-store` (issue 17): a real daemon on SQLite issues and revokes a few hundred
 * certificates, stops; the CLI copies its dataDir into a fresh PostgreSQL database; a daemon
 * configured for that database then serves the same CA: the same root and intermediate, the same
 * CRL entries, the same OCSP answers, renewal of a certificate issued before the move, new
 * issuance and revocation (the copied sequences continue).
 */
const PASSPHRASE = "the passphrase both daemons get";
/** Explicit in both configs: certificates name it, so the CRL and OCSP URLs survive the move. */
const PUBLIC_URL = "http://ca.migrate.test";
const ADMIN_SAN = "spiffe://fleet.test/admin";
const CERTS = 300;
const config = (extra = ""): string => `publicUrl: ${PUBLIC_URL}\nadmins: ["${ADMIN_SAN}"]\n${extra}`;

/** A one-line refusal: exit 1, a single `fleetca: …` line on stderr, nothing on stdout. */
function expectRefused(r: CliResult, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stdout).toBe("");
  expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^fleetca: /);
  expect(r.stderr).toMatch(pattern);
}

describe("fleetca migrate-store: a SQLite CA moves into PostgreSQL", () => {
  let db: TestPostgres;
  let src: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  let good: Issued;
  let revokedOne: Issued;
  let bulkRevoked: Issued;
  let bulkGood: Issued;
  const serials: string[] = [];
  const revoked = new Set<string>();
  let sourceCrl: { number: number; serials: string[] };
  const cleanup: Array<() => Promise<void> | void> = [];

  /** The serials (upper-case hex) and number of the CRL a daemon serves for the current intermediate. */
  const crlOf = async (ws: CaWorkspace, daemon: DaemonProcess): Promise<{ number: number; serials: string[] }> => {
    const der = Buffer.from(await (await fetch(`${daemon.publicUrl}/crl`)).arrayBuffer());
    const path = join(ws.dir, `crl-${Date.now()}-${Math.random()}.der`);
    writeFileSync(path, der);
    const text = (await opensslAsync(["crl", "-inform", "DER", "-in", path, "-noout", "-text"])).out;
    const m = /X509v3 CRL Number:\s*\n?\s*(0x)?([0-9A-Fa-f]+)/.exec(text);
    return { number: Number.parseInt(m?.[2] ?? "0", m?.[1] ? 16 : 10), serials: [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((x) => x[1]!).sort() };
  };
  const ocspStatus = async (client: CaClient, daemon: DaemonProcess, c: Issued): Promise<string> =>
    (await opensslAsync(["ocsp", "-timeout", "5", "-issuer", client.intermediatePath, "-cert", c.certPath, "-url", `${daemon.publicUrl}/ocsp`, "-CAfile", client.rootsPath])).out;
  /** Rows in every table of a database but schema_migrations (null: no fleetca schema at all). */
  const rowsIn = async (url: string): Promise<Record<string, number> | null> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const { rows } = await c.query<{ name: string }>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'schema_migrations'");
      if (rows.length === 0) return null;
      const out: Record<string, number> = {};
      for (const { name } of rows) out[name] = (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${name}"`)).rows[0]!.n;
      return out;
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    db = await startPostgres();
    cleanup.push(() => db.stop());
    src = new CaWorkspace({ passphrase: PASSPHRASE, extraConfig: config(), memoryBacked: true });
    cleanup.push(() => src.remove());
    d = await src.start();
    cleanup.push(() => d.stop());
    ca = await new CaClient(src, d.apiUrl, d.publicUrl).init();
    const admin = await ca.issue("admin", [ADMIN_SAN], {}, ["--admin"]);
    good = await ca.issue("good");
    revokedOne = await ca.issue("revoked-one");
    expect((await ca.revoke(revokedOne.identity, { serial: revokedOne.serial, reason: "keyCompromise" })).status).toBe(200);
    revoked.add(revokedOne.serial);

    // A few hundred more through the API, one key for all (the CSR's key is not what is tested).
    const csr = makeCsr(src.dir, "fleet");
    const tokens = await inParallel(CERTS, 8, (i) => src.token(`host-${i}`, [`host-${i}.fleet.internal`]));
    const signer = new BulkClient(d.apiUrl, ca.roots);
    const answers = await inParallel(CERTS, 8, async (i) => {
      const r = await signer.post("/v1/sign", signBody(csr.csrPem), tokens[i]);
      expect(r.status, r.raw.slice(0, 200)).toBe(201);
      return r.body as { serial: string; certificate: string; chain: string; notBefore: string; notAfter: string };
    });
    signer.close();
    serials.push(...answers.map((a) => a.serial));
    const revoker = new BulkClient(d.apiUrl, ca.roots, admin.identity);
    await inParallel(CERTS, 8, async (i) => {
      if (i % 7 !== 0) return;
      const r = await revoker.post("/v1/revoke", JSON.stringify({ serial: serials[i], ...(i % 2 === 0 && { reason: "superseded" }) }));
      expect(r.status, r.raw.slice(0, 200)).toBe(200);
      revoked.add(serials[i]!);
    });
    revoker.close();
    // And one with the CLI, as an operator would.
    const cli = await src.cli(["revoke", serials[1]!, "--reason", "keyCompromise"]);
    expect(cli.code, cli.stderr).toBe(0);
    revoked.add(serials[1]!);
    bulkRevoked = ca.keep("bulk-revoked", answers[7]!, csr.keyPath);
    bulkGood = ca.keep("bulk-good", answers[2]!, csr.keyPath);

    // What relying parties see before the move.
    sourceCrl = await eventually(
      10_000,
      "the source's CRL lists every revocation",
      () => crlOf(src, d),
      (crl) => crl.serials.length === revoked.size,
    ).then((r) => r.seen);
    expect(sourceCrl.serials).toEqual([...revoked].map((s) => s.toUpperCase()).sort());
    expect(await ocspStatus(ca, d, good)).toMatch(/: good/);
    expect(await ocspStatus(ca, d, revokedOne)).toMatch(/: revoked/);
  }, 300_000);

  afterAll(async () => {
    for (const f of cleanup.reverse()) await Promise.resolve(f()).catch(() => {});
  });

  it("refuses while the daemon runs on the dataDir, and touches no database", async () => {
    const url = await db.createDatabase("while_running");
    expectRefused(await src.cli(["migrate-store", "--to", url]), /fleetca serve \(pid \d+\) is running .*stop it first/);
    expect(await rowsIn(url)).toBeNull();
  });

  it("refuses a password in --to, without repeating it", async () => {
    const url = (await db.createDatabase("with_password")).replace("fleetca@", "fleetca:hunter2@");
    const r = await src.cli(["migrate-store", "--to", url]);
    expectRefused(r, /--to: must not hold a password: put it in --password-file \(or PGPASSWORD\)/);
    expect(r.stderr).not.toContain("hunter2");
  });

  it("refuses a config whose storage is already postgres", async () => {
    const ws = new CaWorkspace({ passphrase: PASSPHRASE, extraConfig: config(`storage: { type: postgres, url: "${db.url}" }\n`) });
    try {
      expectRefused(await ws.cli(["migrate-store", "--to", db.urlOf("other")]), /storage is already postgres/);
    } finally {
      ws.remove();
    }
  });

  it("refuses a development-mode CA (no passphrase): rotate kek first", async () => {
    const dev = new CaWorkspace({ extraConfig: config() });
    try {
      expect((await dev.cli(["init"])).code).toBe(0);
      const url = await db.createDatabase("dev_mode");
      expectRefused(await dev.cli(["migrate-store", "--to", url]), /development mode .*fleetca rotate kek/);
      expect(await rowsIn(url)).toBeNull();
    } finally {
      dev.remove();
    }
  });

  it("stops the source daemon; `fleetca audit verify` still verifies the SQLite log", async () => {
    await d.stop();
    const r = await src.cli(["audit", "verify"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/issuance log OK: \d+ entries/);
  });

  it("a copy that fails part-way leaves the target empty", async () => {
    // The same CA with one row PostgreSQL refuses (text with a NUL byte, which SQLite stores and
    // PostgreSQL's text cannot hold), in a table copied after the issuers and certificates.
    const bad = new CaWorkspace({ passphrase: PASSPHRASE, extraConfig: config() });
    try {
      cpSync(src.dataDir, bad.dataDir, { recursive: true });
      rmSync(join(bad.dataDir, "serve.json"), { force: true });
      const file = new Database(join(bad.dataDir, "fleetca.db"));
      file.prepare("INSERT INTO used_tokens (token_id, provisioner, expires_at, used_at) VALUES ('bootstrap:x' || char(0) || 'y', 'bootstrap', 1, 1)").run();
      file.close();
      const url = await db.createDatabase("failed_copy");
      expectRefused(await bad.cli(["migrate-store", "--to", url]), /copy failed; rolled back, the target database holds no CA row/);
      const rows = await rowsIn(url);
      expect(rows).not.toBeNull(); // the schema was made
      expect(Object.entries(rows!).filter(([, n]) => n > 0)).toEqual([]);
    } finally {
      bad.remove();
    }
  });

  let target = "";
  it("copies the CA into an empty database and verifies the copy; a second run refuses the now non-empty target", async () => {
    target = await db.createDatabase("target");
    const r = await src.cli(["migrate-store", "--to", target, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      tables: Record<string, number>;
      audit: { ok: boolean; entries: number; treeHeads: number };
      keysVerified: number;
      crlsVerified: number;
      storage: { type: string; url: string };
    };
    expect(report.tables.certificates).toBeGreaterThanOrEqual(CERTS + 3); // + admin, good, revoked-one
    expect(report.tables.revocation_log).toBe(revoked.size);
    expect(report.tables.ca_keys).toBeGreaterThanOrEqual(3); // root, intermediate, audit key
    expect(report.tables.kek_params).toBe(1);
    expect(report.tables).not.toHaveProperty("crl_leases");
    expect(report.audit.ok).toBe(true);
    expect(report.audit.entries).toBeGreaterThan(2 * CERTS);
    expect(report.audit.treeHeads).toBeGreaterThanOrEqual(1); // the stopping daemon signed a last head: its signature verified in the copy
    expect(report.keysVerified).toBe(report.tables.ca_keys);
    expect(report.crlsVerified).toBeGreaterThanOrEqual(1);
    expect(report.storage).toEqual({ type: "postgres", url: target });
    // The rows match the source's, table by table.
    const copy = (await rowsIn(target))!;
    const file = new Database(join(src.dataDir, "fleetca.db"), { readonly: true });
    try {
      for (const [table, n] of Object.entries(report.tables)) {
        if (table !== "ca_keys" && table !== "kek_params") expect(file.prepare(`SELECT count(*) FROM "${table}"`).pluck().get(), table).toBe(n);
        expect(copy[table], table).toBe(n);
      }
    } finally {
      file.close();
    }

    expectRefused(await src.cli(["migrate-store", "--to", target]), /target database is not empty: .*certificates \(\d+ rows\).*issuers \(\d+ rows\)/);

    // Without --json: the summary and the config to paste, the password file named, never read out.
    const passwordFile = join(src.dir, "db.password");
    writeFileSync(passwordFile, "unused-by-a-trust-cluster\n", { mode: 0o600 });
    const second = await db.createDatabase("target_text");
    const text = await src.cli(["migrate-store", "--to", second, "--password-file", passwordFile]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`certificates +${report.tables.certificates} rows`));
    expect(text.stdout).toMatch(/issuance log verified in the target: \d+ entries, \d+ signed tree heads/);
    expect(text.stdout).toContain(`storage:\n  type: postgres\n  url: "${second}"\n  passwordFile: ${passwordFile}\n`);
    expect(text.stdout).not.toContain("unused-by-a-trust-cluster");
  }, 120_000);

  it("a daemon on the copy serves the same CA: roots, intermediate, CRL, OCSP; old certificates renew, new ones issue and revoke", async () => {
    expect(target).not.toBe("");
    const dst = new CaWorkspace({ passphrase: PASSPHRASE, extraConfig: config(`storage: { type: postgres, url: "${target}" }\n`) });
    cleanup.push(() => dst.remove());
    const d2 = await dst.start();
    cleanup.push(() => d2.stop());
    const ca2 = await new CaClient(dst, d2.apiUrl, d2.publicUrl).init();
    expect(ca2.roots).toBe(ca.roots);
    expect(ca2.intermediatePem).toBe(ca.intermediatePem);

    const crl = await crlOf(dst, d2);
    expect(crl.serials).toEqual(sourceCrl.serials);
    expect(crl.number).toBeGreaterThanOrEqual(sourceCrl.number);
    expect(await ocspStatus(ca2, d2, good)).toMatch(/: good/);
    expect(await ocspStatus(ca2, d2, bulkGood)).toMatch(/: good/);
    expect(await ocspStatus(ca2, d2, revokedOne)).toMatch(/: revoked/);
    expect(await ocspStatus(ca2, d2, bulkRevoked)).toMatch(/: revoked/);

    // Issued on SQLite, renewed on PostgreSQL: the lineage and the key came along.
    const renewed = await ca2.renew(good.identity);
    expect(renewed.status, renewed.raw).toBe(201);
    expect(renewed.body.serial).not.toBe(good.serial);
    const fresh = await ca2.issue("after-move");
    // A revocation after the move: the revocation log's sequence continues past the copied rows,
    // and the CRL's number goes on upward from the source's.
    expect((await ca2.revoke(fresh.identity, { serial: fresh.serial })).status).toBe(200);
    const after = await eventually(10_000, "the CRL lists the revocation made after the move", () => crlOf(dst, d2), (c) => c.serials.includes(fresh.serial.toUpperCase())).then((r) => r.seen);
    expect(after.number).toBeGreaterThan(sourceCrl.number);
    const sql = new pg.Client({ connectionString: target });
    await sql.connect();
    try {
      const { rows } = await sql.query<{ seq: string }>("SELECT seq FROM revocation_log WHERE serial = $1", [fresh.serial]);
      expect(Number(rows[0]!.seq)).toBe(revoked.size + 1);
    } finally {
      await sql.end();
    }
  }, 120_000);
});
