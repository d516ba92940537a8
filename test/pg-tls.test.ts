import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaWorkspace, type CliResult, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { postApi, signBody } from "./harness/http.js";
import { makeCsr, openssl, opensslAsync } from "./harness/openssl.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";

/**
 * storage.url's TLS against a real PostgreSQL that requires it (hostssl only, as a managed
 * service or a Patroni cluster is set up): a throwaway CA and a server certificate for 127.0.0.1
 * and localhost made here with openssl (keys in a temp directory, never committed). Every
 * connection fleetca opens, the pool's and the LISTEN session's, must be TLS, verified against
 * sslrootcert; a wrong CA or no TLS at all is refused at start in one line.
 */
const PASSPHRASE = "tls replica passphrase";

/** A CA (self-signed, P-256) in `dir`: `name`.pem and `name`.key. */
function makeCa(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  return { cert, key };
}

/** A leaf signed by `ca`: `name`.crt and `name`.key, with `cn` and (for a server) `sans`. */
function makeLeaf(dir: string, ca: { cert: string; key: string }, name: string, cn: string, ext: string): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, `${ext}\n`);
  openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${cn}`]);
  openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extFile]);
  return { cert, key };
}

/** The CLI's refusal: exit 1, one line on stderr, no stack, no secret. */
function expectOneLineRefusal(r: CliResult, message: RegExp): void {
  expect(r.code, r.stdout + r.stderr).toBe(1);
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toContain(PASSPHRASE);
}

describe("PostgreSQL over TLS (storage.url sslmode, sslrootcert, sslcert, sslkey)", () => {
  let pki: string;
  let ca: { cert: string; key: string };
  let otherCa: { cert: string; key: string };
  let client: { cert: string; key: string };
  let db: TestPostgres;
  let plainUrl: string;
  let admin: pg.Client;
  const workspaces: CaWorkspace[] = [];
  let daemon: DaemonProcess | undefined;
  let replicaWs: CaWorkspace;
  let replicaCa: CaClient;
  /** The replica's sslrootcert: a copy of the test CA, so one test can swap its content. */
  let replicaRoot: string;

  const workspace = (url: string): CaWorkspace => {
    const ws = new CaWorkspace({ passphrase: PASSPHRASE, extraConfig: `storage: { type: postgres, url: "${url}" }\n` });
    workspaces.push(ws);
    return ws;
  };
  const verifyFull = (url: string, root = ca.cert) => `${url}?sslmode=verify-full&sslrootcert=${root}`;

  beforeAll(async () => {
    pki = mkdtempSync(join(tmpdir(), "fleetca-pg-pki-"));
    ca = makeCa(pki, "test-pg-ca");
    otherCa = makeCa(pki, "another-ca");
    const server = makeLeaf(pki, ca, "server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth");
    // `cert` authentication maps the client certificate's CN to the database user (pg_hba.conf docs).
    client = makeLeaf(pki, ca, "client", "fleetca", "extendedKeyUsage=clientAuth");
    db = await startPostgres({
      tls: {
        certFile: server.cert,
        keyFile: server.key,
        clientCaFile: ca.cert,
        // No `host` line: plaintext over TCP is refused. certdb also wants a client certificate.
        hba: ["hostssl certdb all 127.0.0.1/32 cert", "hostssl all all 127.0.0.1/32 trust"],
      },
    });
    plainUrl = await db.createDatabase("tls");
    await db.createDatabase("certdb");
    admin = new pg.Client(db.socketConfig("postgres"));
    await admin.connect();
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop().catch(() => {});
    for (const ws of workspaces) ws.remove();
    await admin?.end().catch(() => {});
    await db?.stop();
    if (pki) rmSync(pki, { recursive: true, force: true });
  });

  /** The replica's backends in the tls database: how many are plaintext, how many in all, how many LISTEN over TLS. */
  const replicaBackends = async () =>
    (
      await admin.query<{ plain: number; total: number; listening: number }>(
        `SELECT count(*) FILTER (WHERE NOT s.ssl)::int AS plain, count(*)::int AS total,
                count(*) FILTER (WHERE s.ssl AND a.query ILIKE 'LISTEN fleetca_revocation%')::int AS listening
           FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = 'tls'`,
      )
    ).rows[0]!;

  it("a replica with sslmode=verify-full starts, issues, and hears a revocation; every connection it holds is TLS", async () => {
    replicaRoot = join(pki, "replica-root.pem");
    copyFileSync(ca.cert, replicaRoot);
    const ws = workspace(verifyFull(plainUrl, replicaRoot));
    replicaWs = ws;
    daemon = await ws.start();
    const d = daemon;
    const caClient = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    replicaCa = caClient;

    const token = await ws.token("tls-leaf", ["tls-leaf.internal"]);
    const csr = makeCsr(ws.dir, "tls-leaf");
    const res = await postApi(`${d.apiUrl}/v1/sign`, caClient.roots, { token, body: signBody(csr.csrPem) });
    expect(res.status, res.raw).toBe(201);
    const cert = caClient.keep("tls-leaf", res.body, csr.keyPath);

    // The replica's backends: the pool's and the LISTEN session, each TLS (pg_stat_ssl).
    const during = await replicaBackends();
    expect(during.plain).toBe(0);
    expect(during.listening).toBe(1);
    expect(during.total).toBeGreaterThanOrEqual(2);

    const ocsp = async () =>
      (await opensslAsync(["ocsp", "-timeout", "5", "-issuer", caClient.intermediatePath, "-cert", cert.certPath, "-url", `${d.publicUrl}/ocsp`, "-CAfile", caClient.rootsPath])).out;
    expect(await ocsp()).toMatch(/: good/);
    // Revoked by another process (the CLI, over TLS too): the replica learns of it from the database.
    const revoked = await ws.cli(["revoke", cert.serial, "--reason", "keyCompromise", "--json"]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const seen = await eventually(5_000, "OCSP says revoked", ocsp, (out) => /: revoked/.test(out));
    expect(seen.elapsedMs).toBeLessThan(5_000);

    expect((await replicaBackends()).plain).toBe(0);
    expect(d.child.exitCode).toBeNull();
  }, 120_000);

  it("the server's certificate stops verifying while the replica runs: 503 unavailable (not 500), then recovery, LISTEN included, once it verifies again", async () => {
    const d = daemon!;
    const token = await replicaWs.token("tls-outage", ["tls-outage.internal"]);
    const csr = makeCsr(replicaWs.dir, "tls-outage");
    const sign = () => postApi(`${d.apiUrl}/v1/sign`, replicaCa.roots, { token, body: signBody(csr.csrPem) });
    // node-postgres reads sslrootcert at each new connection: the next ones verify against another CA.
    copyFileSync(otherCa.cert, replicaRoot);
    try {
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'tls'");
      const refused = await sign();
      expect(refused.status, refused.raw).toBe(503);
      expect(refused.body.error).toBe("unavailable");
      // The client is told to retry, not why the database cannot be reached (that is the log's).
      expect(refused.body.message).toBe("the certificate store cannot commit right now; retry later");
      await eventually(10_000, "the LISTEN session's reconnection refused, logged", async () => d.output, (out) => /revocation notifications lost[^\n]*(self[- ]signed|unable to verify)/i.test(out));
    } finally {
      copyFileSync(ca.cert, replicaRoot);
    }
    const again = await eventually(10_000, "issuance again", sign, (r) => r.status !== 503);
    expect(again.seen.status, again.seen.raw).toBe(201);
    await eventually(20_000, "LISTEN again, over TLS", replicaBackends, (b) => b.listening === 1 && b.plain === 0);
    expect(d.child.exitCode).toBeNull();
  }, 60_000);

  it("the sslrootcert file gone while the replica runs: 503, the process lives, recovery once it is back", async () => {
    const d = daemon!;
    const token = await replicaWs.token("tls-gone", ["tls-gone.internal"]);
    const csr = makeCsr(replicaWs.dir, "tls-gone");
    const sign = () => postApi(`${d.apiUrl}/v1/sign`, replicaCa.roots, { token, body: signBody(csr.csrPem) });
    rmSync(replicaRoot);
    try {
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'tls'");
      for (let i = 0; i < 3; i++) {
        const refused = await sign();
        expect(refused.status, refused.raw).toBe(503);
      }
      await eventually(10_000, "the LISTEN session's reconnection refused, logged", async () => d.output, (out) => /revocation notifications cannot connect[^\n]*ENOENT/.test(out));
      expect(d.child.exitCode, d.output.slice(-2000)).toBeNull();
    } finally {
      copyFileSync(ca.cert, replicaRoot);
    }
    const again = await eventually(10_000, "issuance again", sign, (r) => r.status !== 503);
    expect(again.seen.status, again.seen.raw).toBe(201);
    await eventually(20_000, "LISTEN again, over TLS", replicaBackends, (b) => b.listening === 1 && b.plain === 0);
    expect(d.child.exitCode).toBeNull();
  }, 60_000);

  it("what each accepted sslmode does against this server", async () => {
    const status = (query: string) => workspace(`${plainUrl}?${query}`).cli(["status", "--json"]);
    // disable: plaintext, which this server refuses.
    expectOneLineRefusal(await status("sslmode=disable"), /^fleetca: PostgreSQL refused the connection: .*no encryption/);
    // verify-full without sslrootcert: Node's bundled public CAs, which do not include a private CA.
    expectOneLineRefusal(await status("sslmode=verify-full"), /^fleetca: PostgreSQL TLS verification failed/);
    // no-verify, and libpq's require (uselibpqcompat, no sslrootcert): encrypted, the server not verified.
    for (const q of ["sslmode=no-verify", "uselibpqcompat=true&sslmode=require"]) {
      const r = await status(q);
      expect(r.code, `${q}: ${r.stderr}`).toBe(0);
      expect(JSON.parse(r.stdout).storage.type).toBe("postgres");
    }
    // libpq's verify-ca: the chain is checked.
    expectOneLineRefusal(await status(`uselibpqcompat=true&sslmode=verify-ca&sslrootcert=${otherCa.cert}`), /^fleetca: PostgreSQL TLS verification failed/);
    expect((await status(`uselibpqcompat=true&sslmode=verify-ca&sslrootcert=${ca.cert}`)).code).toBe(0);
  }, 60_000);

  it("the server's certificate not chaining to sslrootcert: the CLI and serve refuse in one line naming TLS verification", async () => {
    const ws = workspace(verifyFull(plainUrl, otherCa.cert));
    expectOneLineRefusal(await ws.cli(["status", "--json"]), /^fleetca: PostgreSQL TLS verification failed: .*unable to verify|^fleetca: PostgreSQL TLS verification failed: .*self[- ]signed/i);
    const started = await ws.start().then(
      (d) => {
        daemon = d;
        return "started";
      },
      (e: Error) => e.message,
    );
    expect(started).toMatch(/^daemon exited with 1:/);
    expect(started).not.toMatch(/^\s+at /m);
    expect(started).not.toContain(PASSPHRASE);
    const last = started.trimEnd().split("\n").at(-1)!;
    expect(last).toMatch(/^fleetca: PostgreSQL TLS verification failed: .*sslrootcert/);
  }, 60_000);

  it("verify-full and a server certificate that does not name the URL's host: refused in one line; verify-ca (libpq) takes it", async () => {
    const elsewhere = makeLeaf(pki, ca, "elsewhere", "db.elsewhere.test", "subjectAltName=DNS:db.elsewhere.test\nextendedKeyUsage=serverAuth");
    await db.replaceTlsCertificate(elsewhere.cert, elsewhere.key);
    try {
      expectOneLineRefusal(await workspace(verifyFull(plainUrl)).cli(["status", "--json"]), /^fleetca: PostgreSQL TLS verification failed: .*127\.0\.0\.1.*ERR_TLS_CERT_ALTNAME_INVALID/);
      // libpq's verify-ca checks the chain only: the same certificate is accepted.
      const r = await workspace(`${plainUrl}?uselibpqcompat=true&sslmode=verify-ca&sslrootcert=${ca.cert}`).cli(["status", "--json"]);
      expect(r.code, r.stderr).toBe(0);
    } finally {
      await db.replaceTlsCertificate(join(pki, "server.crt"), join(pki, "server.key"));
    }
    // Back to the certificate for 127.0.0.1: verify-full connects again.
    expect((await workspace(verifyFull(plainUrl)).cli(["status", "--json"])).code).toBe(0);
  }, 60_000);

  it("no sslmode against a server that requires TLS: refused in one line saying so", async () => {
    const ws = workspace(plainUrl);
    expectOneLineRefusal(await ws.cli(["status", "--json"]), /^fleetca: PostgreSQL refused the connection: .*no encryption.*requires TLS/);
  }, 30_000);

  it("an unreadable sslrootcert is named, not a bare ENOENT", async () => {
    const ws = workspace(verifyFull(plainUrl, join(pki, "missing.pem")));
    expectOneLineRefusal(await ws.cli(["list", "--json"]), /^fleetca: storage\.url sslrootcert \S+missing\.pem: ENOENT$/);
  }, 30_000);

  it("migrate-store names --to, not storage.url, in the same refusals", async () => {
    const src = new CaWorkspace({ passphrase: PASSPHRASE });
    workspaces.push(src);
    expect((await src.cli(["init"])).code).toBe(0);
    expectOneLineRefusal(await src.cli(["migrate-store", "--to", verifyFull(plainUrl, join(pki, "missing.pem"))]), /^fleetca: --to sslrootcert \S+missing\.pem: ENOENT$/);
    expectOneLineRefusal(await src.cli(["migrate-store", "--to", plainUrl]), /^fleetca: PostgreSQL refused the connection: .*no encryption.*add sslmode=verify-full.* to --to\)$/);
    expectOneLineRefusal(await src.cli(["migrate-store", "--to", verifyFull(plainUrl, otherCa.cert)]), /^fleetca: PostgreSQL TLS verification failed: .*check --to's sslrootcert/);
  }, 60_000);

  it("a client certificate (sslcert, sslkey) for a database that authenticates by certificate", async () => {
    const certdb = db.urlOf("certdb");
    // Without it, pg_hba's `cert` line refuses.
    const without = workspace(verifyFull(certdb));
    expectOneLineRefusal(await without.cli(["status", "--json"]), /^fleetca: PostgreSQL refused the connection: .*certificate/i);
    // With it, the connection is made (and the schema migrated): the empty database holds no CA.
    const withCert = workspace(`${verifyFull(certdb)}&sslcert=${client.cert}&sslkey=${client.key}`);
    expectOneLineRefusal(await withCert.cli(["status", "--json"]), /^fleetca: no CA in postgres:\/\/fleetca@127\.0\.0\.1:\d+\/certdb/);
    const { rows } = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_database WHERE datname = 'certdb'");
    expect(rows[0]!.n).toBe(1);
    const migrated = new pg.Client(db.socketConfig("certdb"));
    await migrated.connect();
    try {
      expect((await migrated.query("SELECT count(*)::int AS n FROM schema_migrations")).rows[0].n).toBeGreaterThan(0);
    } finally {
      await migrated.end();
    }
  }, 30_000);
});
