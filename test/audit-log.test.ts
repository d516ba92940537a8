import Database from "better-sqlite3";
import { createHash, generateKeyPairSync, randomBytes, sign as cryptoSign } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { consistencyProof, inclusionProof, MerkleFrontier, rootOf, verifyConsistency, verifyInclusion } from "../src/audit/merkle.js";
import { ManualClock } from "../src/core/clock.js";
import type { Signer } from "../src/signing/signer.js";
import { BulkClient, inParallel, mintTokens } from "./harness/bulk.js";
import { eventually } from "./harness/eventually.js";
import { CaWorkspace, type CliResult } from "./harness/fleetca-process.js";
import { fetchRoots, postApi, signBody } from "./harness/http.js";
import { startInProcess } from "./harness/in-process.js";
import { makeCsr } from "./harness/openssl.js";
import { FLEETCA_BIN, REPO } from "./harness/paths.js";

/**
 * Issue 14, the issuance log: an RFC 9162 Merkle tree of every issuance event, intents recorded
 * before signing, signed tree heads, and `fleetca audit verify/query/prove/consistency`. Proofs
 * are checked by an independent implementation: the Python of docs/audit.md (hashlib only), and
 * a naive recursive MTH written here from the RFC's definition.
 */

// --- the independent side ----------------------------------------------------------------------

const sha = (...parts: Uint8Array[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
/** RFC 9162 §2.1.1, written from the definition, recursively: nothing shared with src/audit/merkle.ts. */
function naiveMth(entries: Buffer[]): Buffer {
  if (entries.length === 0) return sha();
  if (entries.length === 1) return sha(Buffer.from([0]), entries[0]!);
  let k = 1;
  while (k * 2 < entries.length) k *= 2;
  return sha(Buffer.from([1]), naiveMth(entries.slice(0, k)), naiveMth(entries.slice(k)));
}

/** The Python verifier exactly as docs/audit.md prints it. */
const pythonVerifier = (() => {
  const md = readFileSync(join(REPO, "docs", "audit.md"), "utf8");
  const m = /```python\n([\s\S]*?)```/.exec(md);
  if (!m) throw new Error("docs/audit.md has no python block");
  return m[1]!;
})();

function pythonChecks(dir: string, proofJson: string, name: string): { code: number; out: string } {
  return pythonChecksAll(dir, [[name, proofJson]])[0]!;
}

/**
 * Runs the docs' script once per proof file, as `python3 verify_proof.py FILE` would, all in one
 * interpreter (one start-up instead of one per proof on a loaded machine): exit codes as it sets them.
 */
function pythonChecksAll(dir: string, proofs: Array<[string, string]>): Array<{ code: number; out: string }> {
  const script = join(dir, "verify_proof.py");
  writeFileSync(script, pythonVerifier);
  const files = proofs.map(([name, json]) => {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, json);
    return file;
  });
  const driver = [
    "import io, json, sys, contextlib",
    "code = open(sys.argv[1]).read()",
    "out = []",
    "for f in sys.argv[2:]:",
    "    sys.argv = ['verify_proof.py', f]; buf = io.StringIO(); rc = 0",
    "    try:",
    "        with contextlib.redirect_stdout(buf): exec(compile(code, 'verify_proof.py', 'exec'), {'__name__': '__main__'})",
    "    except SystemExit as e: rc = e.code or 0",
    "    out.append([rc, buf.getvalue()])",
    "print(json.dumps(out))",
  ].join("\n");
  const r = spawnSync("python3", ["-c", driver, script, ...files], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Array<[number, string]>).map(([code, out]) => ({ code, out }));
}

describe("the Merkle tree (RFC 9162 §2.1)", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("has the RFC's roots, and its proofs verify for every leaf and every pair of sizes up to 40", () => {
    // Distinct by construction (the first byte is the index): two equal random entries would make
    // a neighbour's proof verify, rightly, and the test flaky (1-byte entries collided ~2 % of runs).
    const entries = Array.from({ length: 40 }, (_, i) => Buffer.concat([Buffer.of(i), randomBytes((i % 7) * 9)]));
    const leaves = entries.map((e) => sha(Buffer.from([0]), e));
    const frontier = new MerkleFrontier();
    expect(rootOf(leaves, 0, 0)).toEqual(naiveMth([]));
    for (let n = 1; n <= entries.length; n++) {
      frontier.push(leaves[n - 1]!);
      const root = naiveMth(entries.slice(0, n));
      expect(rootOf(leaves, 0, n).equals(root), `root of ${n}`).toBe(true);
      expect(frontier.root().equals(root), `frontier root of ${n}`).toBe(true);
      for (let m = 0; m < n; m++) {
        const path = inclusionProof(leaves, m, n);
        expect(verifyInclusion(leaves[m]!, m, n, path, root), `inclusion ${m} in ${n}`).toBe(true);
        // A proof for one leaf proves nothing for its neighbour, nor against another root.
        if (n > 1) expect(verifyInclusion(leaves[(m + 1) % n]!, m, n, path, root)).toBe(false);
        expect(verifyInclusion(leaves[m]!, m, n, path, sha(root))).toBe(false);
      }
      for (let m = 1; m <= n; m++) {
        const proof = consistencyProof(leaves, m, n);
        const first = naiveMth(entries.slice(0, m));
        expect(verifyConsistency(m, n, proof, first, root), `consistency ${m}→${n}`).toBe(true);
        if (m < n) expect(verifyConsistency(m, n, proof, sha(first), root)).toBe(false);
      }
    }
  });

  it("proofs made by fleetca's code verify with the Python of docs/audit.md, and forged ones do not", () => {
    const entries = Array.from({ length: 23 }, () => randomBytes(40));
    const leaves = entries.map((e) => sha(Buffer.from([0]), e));
    const cases: Array<[string, string, number]> = [];
    for (const [m, n] of [[0, 1], [5, 23], [22, 23], [16, 17], [7, 8]] as const) {
      const entry = entries[m]!.toString("latin1");
      // The Python hashes entry.encode() (UTF-8): give it ASCII entries, as fleetca's are.
      const ascii = Buffer.from(entry, "latin1").toString("hex");
      const asciiLeaves = entries.map((e, i) => (i === m ? sha(Buffer.from([0]), Buffer.from(ascii)) : leaves[i]!));
      const root = rootOf(asciiLeaves, 0, n);
      const p = { leaf_index: m, tree_size: n, entry: ascii, audit_path: inclusionProof(asciiLeaves, m, n).map((x) => x.toString("hex")), tree_head: { root_hash: root.toString("hex") } };
      cases.push([`incl-${m}-${n}`, JSON.stringify(p), 0]);
      cases.push([`incl-bad-${m}-${n}`, JSON.stringify({ ...p, leaf_index: (m + 1) % n === m ? m + 1 : (m + 1) % n }), 1]);
    }
    for (const [m, n] of [[1, 23], [4, 23], [7, 23], [23, 23], [8, 16], [3, 5]] as const) {
      const p = { first: m, second: n, first_root: rootOf(leaves, 0, m).toString("hex"), second_root: rootOf(leaves, 0, n).toString("hex"), proof: consistencyProof(leaves, m, n).map((x) => x.toString("hex")) };
      cases.push([`cons-${m}-${n}`, JSON.stringify(p), 0]);
      if (m < n) cases.push([`cons-bad-${m}-${n}`, JSON.stringify({ ...p, first_root: rootOf(leaves, 0, m - 1 || 2).toString("hex") }), 1]);
    }
    const results = pythonChecksAll(ws.dir, cases.map(([name, json]) => [name, json]));
    cases.forEach(([name, , want], k) => expect(results[k]!.code, `${name}: ${results[k]!.out}`).toBe(want));
    expect(results.filter((r) => r.out.trim() === "OK")).toHaveLength(cases.filter(([, , want]) => want === 0).length);
  });
});

// --- the daemon's log -----------------------------------------------------------------------------

interface VerifyJson {
  ok: boolean;
  entries: number;
  treeHeads: number;
  latest: { treeSize: number } | null;
  unsigned: number;
  unfinishedIntents: string[];
  failure: { index: number | null; message: string } | null;
}

/** `fleetca audit …` on any dataDir (copies included): a config naming it, the real CLI. */
function auditCli(dir: string, dataDir: string, args: string[]): CliResult {
  const config = join(dir, `config-${createHash("sha256").update(dataDir).digest("hex").slice(0, 8)}.yaml`);
  writeFileSync(config, `dataDir: ${dataDir}\n`);
  const r = spawnSync(process.execPath, [FLEETCA_BIN, "audit", ...args, "--config", config], { encoding: "utf8", env: { ...process.env, FLEETCA_PASSPHRASE: "" } });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

function verifyJson(dir: string, dataDir: string): VerifyJson {
  const r = auditCli(dir, dataDir, ["verify", "--json"]);
  return JSON.parse(r.stdout) as VerifyJson;
}

describe("the issuance log of a running CA", () => {
  const ws = new CaWorkspace({ extraConfig: "audit: { treeHeadInterval: 1s }\n", memoryBacked: true });
  afterAll(() => ws.remove());
  let firstHeadSize = 0;

  it("records 1,000 operations, signs tree heads, and verifies untouched after a restart", { timeout: 180_000 }, async () => {
    const d = await ws.start();
    const roots = await fetchRoots(d.publicUrl);
    type Sth = { tree_size: number; root_hash: string; timestamp: number; signed: string; signature: string; key: { spki: string } };
    const treeHead = async (url: string): Promise<Sth | null> => {
      const r = await fetch(`${url}/v1/audit/tree-head`);
      return r.status === 200 ? ((await r.json()) as Sth) : null;
    };
    const head0 = (await eventually(5_000, "first tree head", () => treeHead(d.publicUrl), (h) => h !== null)).seen!;
    firstHeadSize = head0.tree_size;
    // The head's signature checks with openssl, from the served bytes alone.
    writeFileSync(join(ws.dir, "audit.spki.der"), Buffer.from(head0.key.spki, "base64"));
    writeFileSync(join(ws.dir, "sth.sig"), Buffer.from(head0.signature, "base64"));
    writeFileSync(join(ws.dir, "sth.txt"), head0.signed);
    execFileSync("openssl", ["pkey", "-pubin", "-inform", "DER", "-in", join(ws.dir, "audit.spki.der"), "-out", join(ws.dir, "audit.pub")]);
    const dgst = spawnSync("openssl", ["dgst", "-sha256", "-verify", join(ws.dir, "audit.pub"), "-signature", join(ws.dir, "sth.sig"), join(ws.dir, "sth.txt")], { encoding: "utf8" });
    expect(dgst.stdout.trim()).toBe("Verified OK");
    expect(head0.signed).toBe(`fleetca-tree-head/1 ${head0.tree_size} ${head0.root_hash} ${head0.timestamp}`);

    // 950 issuances, 45 replayed tokens, 5 revocations: 1,000 operations.
    const csrs = Array.from({ length: 10 }, (_, k) => makeCsr(ws.dir, `audit-${k}`, { cn: `svc-${k}.internal` }).csrPem);
    const tokens = await mintTokens(ws, `${d.apiUrl}/v1/sign`, 950, (i) => [`svc-${i % 10}.internal`]);
    const bulk = new BulkClient(d.apiUrl, roots, undefined, 16);
    const serials: string[] = [];
    try {
      const answers = await inParallel(950, 16, (i) => bulk.post("/v1/sign", signBody(csrs[i % 10]!), tokens[i]));
      for (const a of answers) {
        expect(a.status, a.raw).toBe(201);
        serials.push(a.body.serial as string);
      }
      const replays = await inParallel(45, 8, (i) => bulk.post("/v1/sign", signBody(csrs[i % 10]!), tokens[i]));
      expect(replays.every((r) => r.status === 401)).toBe(true);
    } finally {
      bulk.close();
    }
    for (const s of serials.slice(0, 5)) expect((await ws.cli(["revoke", s, "--reason", "keyCompromise"])).code).toBe(0);

    // A tree head covers everything: 950 × (intent + issued) + 45 refusals + 5 revocations.
    const wanted = firstHeadSize + 950 * 2 + 45 + 5;
    await eventually(20_000, "a tree head over every operation", () => treeHead(d.publicUrl), (h) => (h?.tree_size ?? 0) >= wanted);
    await d.stop();
    // The shutdown's head covers the whole log: nothing is left unsigned.
    const afterStop = verifyJson(ws.dir, ws.dataDir);
    expect(afterStop.failure).toBeNull();
    expect(afterStop.unsigned).toBe(0);
    expect(afterStop.unfinishedIntents).toEqual([]);

    const d2 = await ws.start();
    try {
      // The restart's own entries (config, keys, the serving certificate) get a head of their own.
      await eventually(10_000, "a tree head after the restart", () => treeHead(d2.publicUrl), (h) => (h?.tree_size ?? 0) > afterStop.entries);
      const v = verifyJson(ws.dir, ws.dataDir);
      expect(v).toMatchObject({ ok: true, failure: null });
      expect(v.entries).toBeGreaterThanOrEqual(wanted);
      const text = auditCli(ws.dir, ws.dataDir, ["verify"]);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/^issuance log OK: \d+ entries, \d+ signed tree heads verified/);

      // The entries say who, which provisioner, which token id (never the token), which key.
      const q = auditCli(ws.dir, ws.dataDir, ["query", "--serial", serials[0]!, "--json"]);
      const kinds = q.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(kinds.map((k) => k.kind)).toEqual(["intent", "issued", "revoked"]);
      expect(kinds[0]).toMatchObject({ op: "sign", provisioner: "bootstrap", client: "127.0.0.1", sans: ["svc-0.internal"] });
      expect(kinds[0]!.jti).toMatch(/^bootstrap:/);
      expect(q.stdout).not.toContain(tokens[0]!.split(".")[2]!);
      const refused = auditCli(ws.dir, ws.dataDir, ["query", "--since", "1h", "--json", "--limit", "100000"]).stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(refused.filter((e) => e.kind === "token_refused")).toHaveLength(45);
      expect(refused.find((e) => e.kind === "token_refused")).toMatchObject({ reason: "replayed", provisioner: "bootstrap" });
      expect(refused.filter((e) => e.kind === "key_loaded").map((e) => e.role)).toEqual(["intermediate", "audit", "intermediate", "audit"]);
      const bySubject = auditCli(ws.dir, ws.dataDir, ["query", "--subject", "svc-3.internal", "--json", "--limit", "100000"]).stdout.trim().split("\n");
      expect(bySubject).toHaveLength(95 * 2);
      // A limit that cuts the answer says so (on stderr: stdout stays one entry per line); one that does not, says nothing.
      const cut = auditCli(ws.dir, ws.dataDir, ["query", "--subject", "svc-3.internal", "--json", "--limit", "3"]);
      expect(cut.code).toBe(0);
      expect(cut.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { i: number }).i)).toEqual(bySubject.slice(0, 3).map((l) => (JSON.parse(l) as { i: number }).i));
      expect(cut.stderr).toBe("fleetca: showing the first 3 matching entries; more match: raise --limit or narrow the query\n");
      expect(auditCli(ws.dir, ws.dataDir, ["query", "--subject", "svc-3.internal", "--json", "--limit", String(95 * 2)]).stderr).toBe("");

      // Inclusion and consistency proofs, checked by the Python of docs/audit.md.
      const prove = auditCli(ws.dir, ws.dataDir, ["prove", serials[500]!]);
      expect(prove.code, prove.stderr).toBe(0);
      const proof = JSON.parse(prove.stdout) as { kind: string; entry: string };
      expect(proof.kind).toBe("issued");
      expect(JSON.parse(proof.entry)).toMatchObject({ serial: serials[500], kind: "issued" });
      expect(pythonChecks(ws.dir, prove.stdout, "prove")).toMatchObject({ code: 0 });
      const size = v.latest!.treeSize;
      for (const [n, m] of [[firstHeadSize, size], [1, size], [size - 1, size], [777, 1024]] as const) {
        const c = auditCli(ws.dir, ws.dataDir, ["consistency", String(n), String(m)]);
        expect(c.code, c.stderr).toBe(0);
        expect(pythonChecks(ws.dir, c.stdout, `cons-${n}-${m}`), `${n} → ${m}`).toMatchObject({ code: 0 });
      }
      expect(JSON.parse(auditCli(ws.dir, ws.dataDir, ["consistency", String(firstHeadSize), String(size)]).stdout).first_tree_head).not.toBeNull();
      expect(auditCli(ws.dir, ws.dataDir, ["consistency", "5", String(size + 10)]).code).toBe(1);
    } finally {
      await d2.stop();
    }
  });

  /** A copy of the stopped CA's dataDir with `tamper` applied to its database; audit verify's answer. */
  function tampered(name: string, tamper: (db: Database.Database) => void): VerifyJson & { code: number; copy: string } {
    const copy = join(ws.dir, `tamper-${name}`);
    cpSync(ws.dataDir, copy, { recursive: true });
    const db = new Database(join(copy, "fleetca.db"));
    try {
      db.exec("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; DROP TRIGGER audit_tree_heads_no_update; DROP TRIGGER audit_tree_heads_no_delete;");
      tamper(db);
    } finally {
      db.close();
    }
    const r = auditCli(ws.dir, copy, ["verify", "--json"]);
    return { ...(JSON.parse(r.stdout) as VerifyJson), code: r.code, copy };
  }
  const entryAt = (db: Database.Database, idx: number) => db.prepare("SELECT entry FROM audit_log WHERE idx = ?").pluck().get(idx) as Buffer;
  const leaf = (entry: Buffer) => sha(Buffer.from([0]), entry);

  it("names the tampering: an entry modified, deleted, reordered, forged, the tail truncated, a head re-signed", () => {
    // The protection against edits is the triggers for fleetca's own connections…
    const db = new Database(join(ws.dataDir, "fleetca.db"));
    try {
      expect(() => db.prepare("UPDATE audit_log SET kind = 'x' WHERE idx = 1").run()).toThrow(/append-only/);
      expect(() => db.prepare("DELETE FROM audit_log WHERE idx = 1").run()).toThrow(/append-only/);
    } finally {
      db.close();
    }

    // …and, for anyone who edits the file, verification. An entry's bytes changed:
    const modified = tampered("modified", (db) => {
      const e = entryAt(db, 20).toString().replace(/svc-\d\.internal|localhost/, "evil-host.internal");
      db.prepare("UPDATE audit_log SET entry = ? WHERE idx = 20").run(Buffer.from(e));
    });
    expect(modified).toMatchObject({ ok: false, code: 1, failure: { index: 20 } });
    expect(modified.failure!.message).toMatch(/entry 20 was modified/);
    // Without --json: one line on stderr, exit 1.
    const text = auditCli(ws.dir, modified.copy, ["verify"]);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^fleetca: issuance log FAILED: entry 20 was modified \(its bytes no longer hash to its leaf\)\n$/);

    // The same with its stored leaf hash recomputed: the signed heads catch it.
    const rehashed = tampered("rehashed", (db) => {
      const e = Buffer.from(entryAt(db, 20).toString().replace(/svc-\d\.internal|localhost/, "evil-host.internal"));
      db.prepare("UPDATE audit_log SET entry = ?, leaf_hash = ? WHERE idx = 20").run(e, leaf(e));
    });
    expect(rehashed.ok).toBe(false);
    const range = /tree head at size (\d+) does not match the log: an entry between (\d+) and (\d+)/.exec(rehashed.failure!.message);
    expect(range, rehashed.failure!.message).not.toBeNull();
    expect(Number(range![2])).toBeLessThanOrEqual(20);
    expect(Number(range![3])).toBeGreaterThanOrEqual(20);

    const deleted = tampered("deleted", (db) => db.prepare("DELETE FROM audit_log WHERE idx = 30").run());
    expect(deleted.failure!.message).toMatch(/entry 30 is missing/);

    const reordered = tampered("reordered", (db) => {
      db.prepare("UPDATE audit_log SET idx = -1 WHERE idx = 40").run();
      db.prepare("UPDATE audit_log SET idx = 40 WHERE idx = 41").run();
      db.prepare("UPDATE audit_log SET idx = 41 WHERE idx = -1").run();
    });
    expect(reordered.failure!.message).toMatch(/entry 40 says it is entry 41: moved/);

    // A forged issuance appended after the last head (intent + issued for a certificate that was
    // never stored), with correct indexes and leaf hashes.
    const forged = tampered("forged", (db) => {
      const n = db.prepare("SELECT MAX(idx) + 1 FROM audit_log").pluck().get() as number;
      const t = Date.now();
      const fake = "0badc0de0badc0de0badc0de0badc0de";
      const intent = `{"client":"10.0.0.9","i":${n},"issuer":"x","jti":null,"key_sha256":"00","kind":"intent","op":"sign","provisioner":"bootstrap","renewed_from":null,"sans":["bank.internal"],"serial":"${fake}","t":${t},"tbs_sha256":"00","v":1}`;
      const issued = `{"cert_sha256":"00","i":${n + 1},"issuer":"x","jti":null,"kind":"issued","not_after":"2030-01-01T00:00:00.000Z","op":"sign","provisioner":"bootstrap","sans":["bank.internal"],"serial":"${fake}","t":${t},"v":1}`;
      const ins = db.prepare("INSERT INTO audit_log (idx, at, kind, serial, provisioner, subjects, entry, leaf_hash) VALUES (?, ?, ?, ?, 'bootstrap', 'bank.internal', ?, ?)");
      ins.run(n, t, "intent", fake, Buffer.from(intent), leaf(Buffer.from(intent)));
      ins.run(n + 1, t, "issued", fake, Buffer.from(issued), leaf(Buffer.from(issued)));
    });
    expect(forged.ok).toBe(false);
    expect(forged.failure!.message).toMatch(/issued 0badc0de0badc0de0badc0de0badc0de\): the certificate is not in the inventory/);

    const truncated = tampered("truncated", (db) => {
      const n = db.prepare("SELECT MAX(idx) FROM audit_log").pluck().get() as number;
      db.prepare("DELETE FROM audit_log WHERE idx > ?").run(n - 5);
    });
    expect(truncated.failure!.message).toMatch(/covers entries the log no longer has: truncated/);

    const resigned = tampered("resigned", (db) => {
      const h = db.prepare("SELECT tree_size, root_hash, timestamp FROM audit_tree_heads ORDER BY tree_size DESC LIMIT 1").get() as { tree_size: number; root_hash: Buffer; timestamp: number };
      const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const sig = cryptoSign("sha256", Buffer.from(`fleetca-tree-head/1 ${h.tree_size} ${h.root_hash.toString("hex")} ${h.timestamp}`), { key: other.privateKey, dsaEncoding: "der" });
      db.prepare("UPDATE audit_tree_heads SET signature = ?, key_spki = ? WHERE tree_size = ?").run(sig, other.publicKey.export({ type: "spki", format: "der" }), h.tree_size);
    });
    expect(resigned.failure!.message).toMatch(/is signed by a key that is not one of this CA's audit keys/);

    // A certificate slipped into the inventory without its entries.
    const slipped = tampered("slipped", (db) => {
      const cols = (db.prepare("PRAGMA table_info(certificates)").all() as Array<{ name: string; hidden?: number }>).map((c) => c.name).filter((c) => c !== "serial" && c !== "crl_record");
      db.prepare(`INSERT INTO certificates (serial, ${cols.join(", ")}) SELECT '0ddba11c0ffee0ddba11c0ffee0ddba1', ${cols.join(", ")} FROM certificates ORDER BY created_at DESC LIMIT 1`).run();
    });
    expect(slipped.failure!.message).toMatch(/certificate 0ddba11c0ffee0ddba11c0ffee0ddba1 is stored but the issuance log has no "issued" entry/);

    // The untouched original still verifies.
    expect(verifyJson(ws.dir, ws.dataDir).ok).toBe(true);
  });
});

/**
 * Seconds of CLI runs pass between this test's requests: a kept-alive socket can reach the
 * server's keepAliveTimeout (5 s) just as the next request is written on it (ECONNRESET).
 */
const NO_KEEPALIVE = { connection: "close" };

describe("a crash between sign and store (injected)", () => {
  const ws = new CaWorkspace({ extraConfig: "audit: { treeHeadInterval: 1s }\n" });
  afterAll(() => ws.remove());

  it("leaves the intent in the log, hands nothing out, and audit verify passes", { timeout: 120_000 }, async () => {
    // The fault: the intermediate's next signature is made, then the process "dies" before the
    // certificate is stored (the signer throws after signing, the request never reaches commit).
    let armed = false;
    let faulted = 0;
    const wrap = (s: Signer): Signer => ({
      keyType: s.keyType,
      publicKeySpki: s.publicKeySpki,
      async sign(data) {
        const sig = await s.sign(data);
        if (armed) {
          armed = false;
          faulted++;
          throw new Error("injected crash between sign and store");
        }
        return sig;
      },
    });
    const clock = new ManualClock(new Date());
    const { daemon } = await startInProcess(ws, clock, { wrapSigner: wrap });
    try {
      const roots = await fetchRoots(daemon.publicUrl);
      const csr = makeCsr(ws.dir, "crash", { cn: "crash.internal" }).csrPem;
      const token = await ws.token("crash", ["crash.internal"]);
      armed = true;
      const failed = await postApi(`${daemon.apiUrl}/v1/sign`, roots, { token, body: signBody(csr), headers: NO_KEEPALIVE });
      expect(faulted).toBe(1);
      expect(failed.status).toBeGreaterThanOrEqual(500);
      expect(failed.raw).not.toContain("BEGIN CERTIFICATE");

      const unfinished = auditCli(ws.dir, ws.dataDir, ["query", "--since", "1h", "--json"]).stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.unfinished);
      expect(unfinished).toHaveLength(1);
      expect(unfinished[0]).toMatchObject({ kind: "intent", op: "sign", sans: ["crash.internal"] });
      const serial = unfinished[0]!.serial as string;
      expect((await ws.cli(["list", "--json"])).stdout).not.toContain(serial);
      expect(auditCli(ws.dir, ws.dataDir, ["query", "--since", "1h"]).stdout).toMatch(new RegExp(`serial=${serial}.*UNFINISHED`));
      const v = verifyJson(ws.dir, ws.dataDir);
      expect(v).toMatchObject({ ok: true, unfinishedIntents: [serial] });

      // The token was not spent: the client's retry gets a certificate under a new serial.
      const retry = await postApi(`${daemon.apiUrl}/v1/sign`, roots, { token, body: signBody(csr), headers: NO_KEEPALIVE });
      expect(retry.status, retry.raw).toBe(201);
      expect(retry.body.serial).not.toBe(serial);
      expect(verifyJson(ws.dir, ws.dataDir)).toMatchObject({ ok: true, unfinishedIntents: [serial] });
    } finally {
      await daemon.close();
    }
  });
});

describe("SIGTERM during a burst of sign requests", () => {
  const ws = new CaWorkspace({ extraConfig: "audit: { treeHeadInterval: 1m }\n", memoryBacked: true });
  afterAll(() => ws.remove());

  it("finishes what is in flight, signs a last tree head, exits 0; the log and the inventory agree", { timeout: 120_000 }, async () => {
    const d = await ws.start();
    const roots = await fetchRoots(d.publicUrl);
    const csr = makeCsr(ws.dir, "term", { cn: "term.internal" }).csrPem;
    const tokens = await mintTokens(ws, `${d.apiUrl}/v1/sign`, 300, () => ["term.internal"]);
    const bulk = new BulkClient(d.apiUrl, roots, undefined, 16);
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => d.child.once("exit", (code, signal) => resolve({ code, signal })));
    let answered = 0;
    const results = await inParallel(300, 16, async (i) => {
      try {
        const r = await bulk.post("/v1/sign", signBody(csr), tokens[i]);
        if (++answered === 40) d.child.kill("SIGTERM");
        return r;
      } catch (e) {
        return e as Error;
      }
    }).finally(() => bulk.close());
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(d.output).toMatch(/msg="shutting down" signal=SIGTERM/);

    const ok = results.filter((r): r is Exclude<typeof r, Error> => !(r instanceof Error) && r.status === 201);
    const other = results.filter((r) => !(r instanceof Error) && r.status !== 201);
    // Each request got its certificate or its connection refused / closed: never a 5xx.
    expect(other.map((r) => (r as { raw: string }).raw)).toEqual([]);
    expect(ok.length).toBeGreaterThanOrEqual(40);
    expect(ok.length).toBeLessThan(300);

    const list = JSON.parse((await ws.cli(["list", "--json"])).stdout) as Array<{ serial: string }>;
    const stored = new Set(list.map((c) => c.serial));
    for (const r of ok) expect(stored.has(r.body.serial as string)).toBe(true);
    // The last tree head covers the whole log; every stored certificate has its entries and every
    // intent its certificate (nothing was cut between sign and store).
    const v = verifyJson(ws.dir, ws.dataDir);
    expect(v).toMatchObject({ ok: true, unsigned: 0, unfinishedIntents: [] });
    const issued = auditCli(ws.dir, ws.dataDir, ["query", "--provisioner", "bootstrap", "--json", "--limit", "100000"]).stdout.trim().split("\n").map((l) => JSON.parse(l) as { kind: string; serial?: string });
    expect(new Set(issued.filter((e) => e.kind === "issued").map((e) => e.serial))).toEqual(new Set([...stored].filter((s) => list.find((c) => c.serial === s && (c as { provisioner?: string }).provisioner === "bootstrap"))));
  });
});

describe("GET /v1/audit/tree-head from public workers", () => {
  const ws = new CaWorkspace({ extraConfig: "audit: { treeHeadInterval: 1s }\n", listen: "publicWorkers: 2" });
  afterAll(() => ws.remove());

  it("every worker serves the latest signed head the primary stored", { timeout: 60_000 }, async () => {
    const d = await ws.start();
    try {
      // Round-robin over fresh connections reaches both workers.
      const heads = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const r = await fetch(`${d.publicUrl}/v1/audit/tree-head`, { headers: { connection: "close" } });
          expect(r.status).toBe(200);
          expect(r.headers.get("cache-control")).toBe("no-cache");
          return (await r.json()) as { tree_size: number; signed: string };
        }),
      );
      const v = verifyJson(ws.dir, ws.dataDir);
      expect(v.ok).toBe(true);
      for (const h of heads) {
        expect(h.tree_size).toBeGreaterThan(0);
        expect(h.tree_size).toBeLessThanOrEqual(v.latest!.treeSize);
        expect(h.signed).toMatch(/^fleetca-tree-head\/1 \d+ [0-9a-f]{64} \d+$/);
      }
    } finally {
      await d.stop();
    }
  });
});
