import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { postApi, signBody } from "./harness/http.js";
import { makeCsr, opensslAsync } from "./harness/openssl.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";
import { eventually } from "./harness/eventually.js";
import { samples, scrape } from "./harness/prometheus.js";

/**
 * Several replicas on one PostgreSQL (issue 17): the real daemon three times, each with its own
 * dataDir and listeners, all configured as they would be behind one load balancer (the same
 * publicUrl and apiUrl, so certificates and tokens are the same whichever replica answers).
 */
const PASSPHRASE = "replicas share this passphrase";
const PUBLIC_URL = "http://ca.fleet.test";
const API_URL = "https://ca.fleet.test";

interface Replica {
  ws: CaWorkspace;
  d: DaemonProcess;
  ca: CaClient;
}

describe("three replicas on one PostgreSQL", () => {
  let db: TestPostgres;
  let url: string;
  const replicas: Replica[] = [];
  let sql: pg.Pool;

  const workspace = (): CaWorkspace =>
    new CaWorkspace({
      passphrase: PASSPHRASE,
      // Short lifetimes make the daemon's periodic job run every 9 s (a tenth of the serving
      // certificate's life), so it runs during the database outage below too.
      extraConfig: `storage: { type: postgres, url: "${url}" }\npublicUrl: ${PUBLIC_URL}\napiUrl: ${API_URL}\nissuance: { defaultTTL: 90s, maxTTL: 90s }\n`,
    });
  const startReplica = async (ws = workspace()): Promise<Replica> => {
    const d = await ws.start();
    const ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    return { ws, d, ca };
  };

  beforeAll(async () => {
    db = await startPostgres();
    url = await db.createDatabase("replicas");
    sql = new pg.Pool({ connectionString: url, max: 2 });
    // Its idle connections break when the test stops the server: not an error of the test.
    sql.on("error", () => {});
    // The first replica makes the CA on the empty database; the other two start together on it.
    replicas.push(await startReplica());
    replicas.push(...(await Promise.all([startReplica(), startReplica()])));
  }, 180_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.d.stop().catch(() => {})));
    for (const r of replicas) r.ws.remove();
    await sql?.end();
    await db?.stop();
  });

  /** POST /v1/sign to one replica with a token minted for the shared apiUrl. */
  const sign = async (r: Replica, name: string, token?: string) => {
    const t = token ?? (await r.ws.token(name, [`${name}.internal`]));
    const csr = makeCsr(r.ws.dir, name);
    const res = await postApi(`${r.d.apiUrl}/v1/sign`, r.ca.roots, { token: t, body: signBody(csr.csrPem) });
    return { res, token: t, keyPath: csr.keyPath };
  };

  /** `openssl ocsp` (with a nonce, as it sends by default; `stapler`: none, as a TLS server stapling asks). */
  const ocspStatus = async (r: Replica, c: Issued, stapler = false): Promise<string> =>
    (await opensslAsync(["ocsp", "-timeout", "5", ...(stapler ? ["-no_nonce"] : []), "-issuer", r.ca.intermediatePath, "-cert", c.certPath, "-url", `${r.d.publicUrl}/ocsp`, "-CAfile", r.ca.rootsPath])).out;

  /** The serials a replica's served CRL of the current intermediate lists (upper-case hex), and its number. */
  const crlOf = async (r: Replica): Promise<{ number: number; serials: string[] }> => {
    const der = Buffer.from(await (await fetch(`${r.d.publicUrl}/crl`)).arrayBuffer());
    const path = join(r.ws.dir, `crl-${Date.now()}-${Math.random()}.der`);
    writeFileSync(path, der);
    const text = (await opensslAsync(["crl", "-inform", "DER", "-in", path, "-noout", "-text"])).out;
    const number = Number.parseInt(/X509v3 CRL Number:\s*\n?\s*(?:0x)?([0-9A-Fa-f]+)/.exec(text)?.[1] ?? "0", /0x/.test(text) ? 16 : 10);
    return { number, serials: [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!) };
  };

  /** The values of a metric's series on a replica's /metrics (on its public listener, as configured here). */
  const metric = async (r: Replica, name: string, labels: Record<string, string> = {}): Promise<number[]> =>
    samples((await scrape(`${r.d.publicUrl}/metrics`)).samples, name, labels).map((s) => s.value);

  it("all three serve one CA: the same roots, and one intermediate", async () => {
    expect(new Set(replicas.map((r) => r.ca.roots)).size).toBe(1);
    expect(new Set(replicas.map((r) => r.ca.intermediatePem)).size).toBe(1);
    const { rows } = await sql.query("SELECT role, count(*)::int AS n FROM issuers GROUP BY role ORDER BY role");
    expect(rows).toEqual([
      { role: "intermediate", n: 1 },
      { role: "root", n: 1 },
    ]);
  });

  it("issuance spread over the replicas: no serial twice, every certificate handed out is stored, a token is spent everywhere at once", async () => {
    const handedOut: string[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const r = replicas[i % replicas.length]!;
        const { res } = await sign(r, `spread-${i}`);
        expect(res.status, res.raw).toBe(201);
        handedOut.push(res.body.serial as string);
      }),
    );
    expect(new Set(handedOut).size).toBe(30);
    const { rows } = await sql.query("SELECT serial FROM certificates WHERE serial = ANY($1)", [handedOut]);
    expect(rows).toHaveLength(30);

    // One token, sent to replica 0 and then to replica 2: the second is a replay.
    const first = await sign(replicas[0]!, "once");
    expect(first.res.status, first.res.raw).toBe(201);
    const again = await sign(replicas[2]!, "once-again", first.token);
    expect(again.res.status, again.res.raw).toBe(401);
    expect(again.res.raw).toMatch(/replay|used/i);
    // Sent to two replicas at the same moment: exactly one certificate.
    const token = await replicas[1]!.ws.token("race", ["race.internal"]);
    const raced = await Promise.all([sign(replicas[1]!, "race-a", token), sign(replicas[2]!, "race-b", token)]);
    expect(raced.map((x) => x.res.status).sort()).toEqual([201, 401]);
  }, 120_000);

  it("the CLI on a replica's config: token create works, status --health answers", async () => {
    const r = replicas[1]!;
    const t = await r.ws.cli(["token", "create", "--sub", "cli", "--san", "cli.internal", "--json"]);
    expect(t.code, t.stderr).toBe(0);
    const { res } = await sign(r, "cli", JSON.parse(t.stdout).token as string);
    expect(res.status, res.raw).toBe(201);
    const health = await r.ws.cli(["status", "--health"]);
    expect(health.code, health.stdout + health.stderr).toBe(0);
    // Each replica's API serving certificate supersedes only its own predecessors: three live ones.
    const listed = await r.ws.cli(["list", "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    const serving = (JSON.parse(listed.stdout) as Array<{ provisioner: string; instance: string | null }>).filter((c) => c.provisioner === "fleetca-api");
    expect(serving).toHaveLength(3);
    expect(new Set(serving.map((c) => c.instance)).size).toBe(3);
    expect(serving.every((c) => c.instance?.startsWith("replica:"))).toBe(true);
  }, 60_000);

  it("a revocation on one replica shows in OCSP and the CRL on each of the others within 5 s", async () => {
    const [a, b, c] = replicas as [Replica, Replica, Replica];
    const { res, keyPath } = await sign(a, "to-revoke");
    expect(res.status, res.raw).toBe(201);
    const cert = a.ca.keep("to-revoke", res.body, keyPath);
    // Known good everywhere first (so a cached "good" answer is what has to change).
    for (const r of replicas) expect(await ocspStatus(r, cert)).toMatch(/: good/);
    const revoked = await a.ca.revoke(cert.identity, { serial: cert.serial, reason: "keyCompromise" });
    expect(revoked.status, revoked.raw).toBe(200);
    const serialHex = cert.serial.toUpperCase();
    for (const r of [b, c]) {
      const seen = await eventually(5_000, "OCSP on another replica says revoked", () => ocspStatus(r, cert), (out) => /: revoked/.test(out));
      expect(seen.elapsedMs).toBeLessThan(5_000);
      await eventually(5_000, "the CRL another replica serves lists it", () => crlOf(r), (crl) => crl.serials.includes(serialHex));
    }
    // Its answer was re-signed once, by the replica holding the singleton lease; the others dropped theirs.
    const said = (r: Replica, what: string) => new RegExp(`msg="OCSP responses ${what}[^"]*"[^\n]*serial=${cert.serial}`, "i").test(r.d.output);
    await eventually(5_000, "every replica handled the revocation", async () => replicas.filter((r) => said(r, "re-signed") || said(r, "dropped")).length, (n) => n === 3);
    expect(replicas.filter((r) => said(r, "re-signed"))).toHaveLength(1);
    expect(replicas.filter((r) => said(r, "dropped"))).toHaveLength(2);
  }, 60_000);

  it("one replica killed with SIGKILL under load: the others keep issuing, its CRL lease moves within the lease time, CRL numbers only go up", async () => {
    // Who writes the current intermediate's full CRL now.
    const { rows } = await sql.query("SELECT issuer_key_id, holder FROM crl_leases WHERE shard = -1 AND leased_until > $1", [Date.now()]);
    expect(rows).toHaveLength(1);
    const holderPid = Number((rows[0]!.holder as string).split(":")[1]);
    const victim = replicas.find((r) => r.d.child.pid === holderPid)!;
    expect(victim, "the lease holder is one of the replicas").toBeDefined();
    const survivors = replicas.filter((r) => r !== victim);
    // Each replica's /metrics says the same: the holder 1, the two still trying for it 0.
    const lease = `crl/${rows[0]!.issuer_key_id as string}/full`;
    const leaseHeld = (r: Replica) => metric(r, "fleetca_leases_held", { lease });
    expect(await leaseHeld(victim)).toEqual([1]);
    for (const r of survivors) expect(await leaseHeld(r)).toEqual([0]);

    const numbers: number[] = [];
    let load = true;
    const issued: number[] = [];
    const loadLoop = (async () => {
      for (let i = 0; load; i++) {
        const r = survivors[i % survivors.length]!;
        const { res } = await sign(r, `load-${i}`);
        issued.push(res.status);
      }
    })();
    numbers.push((await crlOf(survivors[0]!)).number);
    victim.d.child.kill("SIGKILL");
    // A revocation after the kill needs a new CRL: only the new lease holder can sign it.
    const { res, keyPath } = await sign(survivors[0]!, "after-kill");
    expect(res.status, res.raw).toBe(201);
    const cert = survivors[0]!.ca.keep("after-kill", res.body, keyPath);
    expect((await survivors[1]!.ca.revoke(cert.identity, { serial: cert.serial, reason: "superseded" })).status).toBe(200);
    const moved = await eventually(
      15_000 + 5_000,
      "a new CRL listing the revocation, signed by another replica",
      async () => {
        const crl = await crlOf(survivors[1]!);
        numbers.push(crl.number);
        return crl;
      },
      (crl) => crl.serials.includes(cert.serial.toUpperCase()),
    );
    load = false;
    await loadLoop;
    expect(issued.length).toBeGreaterThan(0);
    expect(issued.every((s) => s === 201)).toBe(true);
    expect(moved.seen.number).toBeGreaterThan(numbers[0]!);
    // Every CRL fetched during the test: the number never went back.
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBeGreaterThanOrEqual(numbers[i - 1]!);
    const after = await sql.query("SELECT holder FROM crl_leases WHERE shard = -1 AND leased_until > $1", [Date.now()]);
    expect(after.rows[0]?.holder).not.toBe(rows[0]!.holder);
    // The survivor that signed it reports the lease held; the other still 0.
    const newHolder = survivors.find((r) => r.d.child.pid === Number((after.rows[0]!.holder as string).split(":")[1]))!;
    expect(newHolder, "the new holder is a survivor").toBeDefined();
    expect(await leaseHeld(newHolder)).toEqual([1]);
    expect(await leaseHeld(survivors.find((r) => r !== newHolder)!)).toEqual([0]);
    replicas.splice(replicas.indexOf(victim), 1);
  }, 90_000);

  it("PostgreSQL stopped for 30 s: 503 on issuance and /healthz, pre-signed OCSP and the last CRL still served, recovery without a restart", async () => {
    const r = replicas[0]!;
    const { res, keyPath } = await sign(r, "before-outage");
    expect(res.status, res.raw).toBe(201);
    const cert = r.ca.keep("before-outage", res.body, keyPath);
    // Asked for once while the database is up (as a stapling server does), so the answer is in memory.
    expect(await ocspStatus(r, cert, true)).toMatch(/: good/);
    const crlBefore = await crlOf(r);
    const token = await r.ws.token("during-outage", ["during-outage.internal"]);

    await db.pause();
    try {
      const started = Date.now();
      await eventually(10_000, "/healthz 503", async () => (await fetch(`${r.d.publicUrl}/healthz`)).status, (s) => s === 503);
      const during = await sign(r, "during-outage", token);
      expect(during.res.status, during.res.raw).toBe(503);
      expect(during.res.body.error).toBe("unavailable");
      expect(await ocspStatus(r, cert, true)).toMatch(/: good/);
      // With a nonce the status cannot be read now: the answer held is served, nonce ignored.
      expect(await ocspStatus(r, cert)).toMatch(/: good/);
      expect((await crlOf(r)).number).toBe(crlBefore.number);
      // The metric makes /healthz's probe (the same query, the same timeout).
      expect(await metric(r, "fleetca_storage_up")).toEqual([0]);
      // Its LISTEN session went with the server; polling stands in.
      expect(await metric(r, "fleetca_revocation_notifications_up")).toEqual([0]);
      const rest = 30_000 - (Date.now() - started);
      if (rest > 0) await new Promise((done) => setTimeout(done, rest));
    } finally {
      await db.resume();
    }
    await eventually(30_000, "/healthz 200 again", async () => (await fetch(`${r.d.publicUrl}/healthz`)).status, (s) => s === 200);
    expect(await metric(r, "fleetca_storage_up")).toEqual([1]);
    // The session reconnects on a backoff of its own (doubling to 10 s, ±50 %), so after /healthz.
    await eventually(20_000, "fleetca_revocation_notifications_up 1 again", () => metric(r, "fleetca_revocation_notifications_up"), (v) => v[0] === 1 && v.length === 1);
    // Every replica lived through it (nothing the outage made fail ended a process).
    for (const x of replicas) expect(x.d.child.exitCode, x.d.output.slice(-2000)).toBeNull();
    // The token the refused request carried was not spent: nothing of it was stored.
    const after = await sign(r, "after-outage", token);
    expect(after.res.status, after.res.raw).toBe(201);
  }, 120_000);

  /** `fleetca ARGS` on a replica's config (its passphrase, the shared database); exit 0 expected. */
  const operator = async (r: Replica, args: string[]): Promise<string> => {
    const out = await r.ws.cli(args);
    expect(out.code, `fleetca ${args.join(" ")}: ${out.stderr}`).toBe(0);
    return out.stdout;
  };
  const issuerOf = async (serial: string): Promise<string> =>
    (await sql.query("SELECT issuer_key_id FROM certificates WHERE serial = $1", [serial])).rows[0]?.issuer_key_id as string;
  /** The PEM certificates /roots.pem of a replica serves. */
  const rootsServed = async (r: Replica): Promise<number> => ((await (await fetch(`${r.d.publicUrl}/roots.pem`)).text()).match(/BEGIN CERTIFICATE/g) ?? []).length;
  const rootCrlNumber = async (r: Replica, rootKeyId: string): Promise<number> => {
    const res = await fetch(`${r.d.publicUrl}/crl/${rootKeyId}`);
    if (res.status !== 200) return -1;
    const path = join(r.ws.dir, `root-crl-${Date.now()}-${Math.random()}.der`);
    writeFileSync(path, Buffer.from(await res.arrayBuffer()));
    const text = (await opensslAsync(["crl", "-inform", "DER", "-in", path, "-noout", "-text"])).out;
    return Number.parseInt(/X509v3 CRL Number:\s*\n?\s*(?:0x)?([0-9A-Fa-f]+)/.exec(text)?.[1] ?? "-1", /CRL Number:\s*\n?\s*0x/.test(text) ? 16 : 10);
  };

  it("operator commands on a replica's config act on the shared database, and every replica follows", async () => {
    const [a, b] = replicas as [Replica, Replica];
    const { res, keyPath } = await sign(a, "operated");
    expect(res.status, res.raw).toBe(201);
    const cert = a.ca.keep("operated", res.body, keyPath);

    // Inventory and status read the database, whichever replica's config is used.
    const listed = JSON.parse(await operator(b, ["list", "--json"])) as Array<{ serial: string; status: string }>;
    expect(listed.find((c) => c.serial === cert.serial)?.status).toBe("valid");
    const status = JSON.parse(await operator(b, ["status", "--json"])) as {
      storage: { type: string; location: string };
      protection: string;
      issuers: Array<{ role: string; keyId: string; current: boolean }>;
      certificates: { valid: number };
    };
    expect(status.storage.type).toBe("postgres");
    expect(status.storage.location).not.toMatch(/:[^/@]*@/);
    expect(status.protection).toBe("passphrase");
    expect(status.certificates.valid).toBeGreaterThan(0);
    const oldIntermediate = status.issuers.find((i) => i.current)!.keyId;
    const oldRoot = status.issuers.find((i) => i.role === "root")!.keyId;

    // fleetca revoke: every replica's OCSP says revoked within 5 s (NOTIFY at commit).
    expect(JSON.parse(await operator(b, ["revoke", cert.serial, "--reason", "keyCompromise", "--json"])).alreadyRevoked).toBe(false);
    for (const r of replicas) {
      const seen = await eventually(5_000, "OCSP says revoked after fleetca revoke", () => ocspStatus(r, cert), (out) => /: revoked/.test(out));
      expect(seen.elapsedMs).toBeLessThan(5_000);
    }

    // renew-window counts the live certificates it names, in the shared database.
    expect(await operator(a, ["renew-window", "--issuer", oldIntermediate, "--by", "1h"])).toMatch(/^matched \d+ live certificates? \(issuer /);

    // rotate intermediate: both replicas issue from the new one within 5 s (their issuer poll).
    const rotated = await operator(a, ["rotate", "intermediate", "--migrate-within", "1h"]);
    const newIntermediate = /new intermediate key id:\s+([0-9a-f]+)/.exec(rotated)![1]!;
    expect(newIntermediate).not.toBe(oldIntermediate);
    for (const r of replicas) {
      await eventually(5_000, "issues from the new intermediate", async () => issuerOf((await sign(r, `rotated-${Math.random().toString(36).slice(2, 8)}`)).res.body.serial as string), (k) => k === newIntermediate);
    }

    // revoke-issuer: the old intermediate goes on its root's CRL, which every replica serves.
    const crlBefore = await rootCrlNumber(a, oldRoot);
    expect(await operator(b, ["revoke-issuer", oldIntermediate, "--reason", "superseded"])).toMatch(/^revoked intermediate [0-9a-f]+ at .+ on root CRL #\d+/);
    for (const r of replicas) await eventually(10_000, "the new root CRL is served", () => rootCrlNumber(r, oldRoot), (n) => n > crlBefore);
    const signed = await operator(a, ["crl", "sign-root"]);
    expect(signed).toMatch(/^signed root CRL #\d+ of [0-9a-f]+: 1 revoked intermediate\(s\)/);

    // rotate root: both roots (and the cross certificate) on /roots.pem of every replica; a new
    // intermediate under the new root; then the old root retired leaves /roots.pem everywhere.
    const rootRotation = await operator(b, ["rotate", "root"]);
    const newRoot = /^new root ([0-9a-f]+)/.exec(rootRotation)![1]!;
    for (const r of replicas) await eventually(10_000, "roots.pem serves both roots and the cross certificate", () => rootsServed(r), (n) => n === 3);
    expect((await refused(a, ["retire", "root", oldRoot])).stderr).toMatch(/chains to root/);
    await operator(a, ["rotate", "intermediate"]);
    expect(await operator(a, ["retire", "root", oldRoot])).toMatch(new RegExp(`^retired root ${oldRoot}; trusted roots now: ${newRoot}`));
    for (const r of replicas) await eventually(10_000, "roots.pem serves only the new root", () => rootsServed(r), (n) => n === 1);

    // Every action is in the issuance log, and the log verifies from either replica's config.
    const events = await operator(b, ["audit", "query", "--since", "1h", "--json", "--limit", "1000000"]);
    for (const e of ["intermediate_rotated", "issuer_revoked", "root_rotated", "root_retired"]) expect(events).toContain(`"event":"${e}"`);
    expect(await operator(a, ["audit", "verify"])).toMatch(/^issuance log OK: \d+ entries/);
    for (const x of replicas) expect(x.d.child.exitCode, x.d.output.slice(-2000)).toBeNull();
  }, 180_000);

  /** `fleetca ARGS` expected to fail with one line. */
  const refused = async (r: Replica, args: string[]) => {
    const out = await r.ws.cli(args);
    expect(out.code, `fleetca ${args.join(" ")} should fail`).not.toBe(0);
    expect(out.stderr).toMatch(/^fleetca: [^\n]+\n$/);
    return out;
  };
});
