import Database from "better-sqlite3";
import { X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { acceptRefreshedRoots, acceptRoots, sha256Hex } from "../src/agent/trust.js";
import { toPem } from "../src/x509/pem.js";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { makeCsr, opensslAll } from "./harness/openssl.js";
import { eventually } from "./harness/eventually.js";
import { fetchRoots, postApi, signBody } from "./harness/http.js";
import { allPem } from "../src/x509/pem.js";

/**
 * Issue 14, `fleetca rotate root` / `fleetca retire root`: a new root cross-signed by the old,
 * both trusted (with the cross certificate) until the old one is retired.
 */
describe("fleetca rotate root / retire root", () => {
  const ws = new CaWorkspace({ passphrase: "root rotation passphrase" });
  afterAll(() => ws.remove());

  const rootsIn = () => {
    const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    try {
      return {
        roots: db.prepare("SELECT key_id, status, der FROM issuers WHERE role = 'root' ORDER BY created_at").all() as Array<{ key_id: string; status: string; der: Buffer }>,
        cross: db.prepare("SELECT subject_key_id, issuer_key_id, der FROM cross_certificates").all() as Array<{ subject_key_id: string; issuer_key_id: string; der: Buffer }>,
      };
    } finally {
      db.close();
    }
  };

  it("makes a new root, cross-signed by the old, that agents pinned to the old root accept", async () => {
    expect((await ws.cli(["init"])).code).toBe(0);
    const before = rootsIn();
    expect(before.roots).toHaveLength(1);
    const oldRoot = before.roots[0]!;

    const r = await ws.cli(["rotate", "root"]);
    expect(r.code, r.stderr).toBe(0);
    const m = /^new root ([0-9a-f]{40}) \(SHA-256 ([0-9a-f]{64})\), cross-signed by root ([0-9a-f]{40})/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(m![3]).toBe(oldRoot.key_id);

    const after = rootsIn();
    expect(after.roots.map((x) => x.status)).toEqual(["active", "active"]);
    const newRoot = after.roots[1]!;
    expect(newRoot.key_id).toBe(m![1]);
    expect(sha256Hex(newRoot.der)).toBe(m![2]);
    expect(after.cross).toHaveLength(1);
    const cross = after.cross[0]!;
    expect([cross.subject_key_id, cross.issuer_key_id]).toEqual([newRoot.key_id, oldRoot.key_id]);

    // The cross certificate is the new root's name and key, issued and signed by the old root.
    const oldX = new X509Certificate(oldRoot.der);
    const newX = new X509Certificate(newRoot.der);
    const crossX = new X509Certificate(cross.der);
    expect(newX.verify(newX.publicKey)).toBe(true);
    // Same name, new key (RFC 4210 §4.4 root key update): the cross certificate is self-issued.
    expect(newX.subject).toBe(oldX.subject);
    expect(Buffer.from(newX.publicKey.export({ type: "spki", format: "der" })).equals(oldX.publicKey.export({ type: "spki", format: "der" }))).toBe(false);
    expect(crossX.subject).toBe(newX.subject);
    expect(crossX.publicKey.export({ type: "spki", format: "der" }).equals(newX.publicKey.export({ type: "spki", format: "der" }))).toBe(true);
    expect(crossX.checkIssued(oldX) && crossX.verify(oldX.publicKey)).toBe(true);
    expect(crossX.ca).toBe(true);
    // openssl builds cross → old root, trusting only the old root.
    writeFileSync(join(ws.dir, "old-root.pem"), toPem(oldRoot.der, "CERTIFICATE"));
    writeFileSync(join(ws.dir, "cross.pem"), toPem(cross.der, "CERTIFICATE"));
    const v = opensslAll(["verify", "-x509_strict", "-CAfile", join(ws.dir, "old-root.pem"), join(ws.dir, "cross.pem")]);
    expect(v.code, v.out).toBe(0);

    // An agent pinned to the old root takes the rotated bundle (both roots + the cross cert).
    const pin = sha256Hex(oldRoot.der);
    const anchors = acceptRoots(toPem(oldRoot.der, "CERTIFICATE"), pin);
    const bundle = [oldRoot.der, newRoot.der, cross.der].map((d) => toPem(d, "CERTIFICATE")).join("");
    expect(acceptRefreshedRoots(bundle, anchors, pin)?.ders).toHaveLength(3);
    // …and, after the old root is retired, a bundle of the new root alone is not its pin's word.
    expect(() => acceptRefreshedRoots(toPem(newRoot.der, "CERTIFICATE"), anchors, pin)).toThrow(/none is the pinned root or cross-signed by it/);

    // The rotation is in the issuance log.
    const events = (await ws.cli(["audit", "query", "--since", "1h", "--json"])).stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.filter((e) => e.kind === "event").map((e) => e.event)).toEqual(["root_rotated"]);
  });

  it("refuses to retire the root the issuing intermediate chains to, an unknown root, or the last root", async () => {
    const { roots } = rootsIn();
    const busy = await ws.cli(["retire", "root", roots[0]!.key_id]);
    expect(busy.code).toBe(1);
    expect(busy.stderr.trim()).toMatch(/^fleetca: the issuing intermediate [0-9a-f]+ chains to root [0-9a-f]+; run "fleetca rotate intermediate" \(under the new root\) first$/);
    const unknown = await ws.cli(["retire", "root", "00".repeat(20)]);
    expect(unknown.stderr.trim()).toMatch(/^fleetca: no root with key id/);
    expect(rootsIn().roots.map((x) => x.status)).toEqual(["active", "active"]);
  });

  it("a running daemon serves the new bundle; the next intermediate is under the new root, and its leaves verify from the old root through the cross certificate", { timeout: 120_000 }, async () => {
    const d = await ws.start();
    try {
      const bundle = async () => allPem(await (await fetch(`${d.publicUrl}/roots.pem`)).text(), "CERTIFICATE");
      const { roots, cross } = rootsIn();
      const { seen } = await eventually(5_000, "/roots.pem serves both roots and the cross certificate", bundle, (b) => b.length === 3);
      expect(seen.map((b) => Buffer.from(b).toString("hex")).sort()).toEqual([roots[0]!.der, roots[1]!.der, cross[0]!.der].map((b) => b.toString("hex")).sort());

      // The next intermediate is certified by the new root.
      const r = await ws.cli(["rotate", "intermediate"]);
      expect(r.code, r.stderr).toBe(0);
      const fresh = /new intermediate key id:\s+([0-9a-f]{40})/.exec(r.stdout)![1]!;
      await eventually(5_000, "the daemon issues from the new intermediate", async () => new X509Certificate(Buffer.from(await (await fetch(`${d.publicUrl}/intermediate.crt`)).arrayBuffer())), (c) => c.checkIssued(new X509Certificate(roots[1]!.der)) && c.verify(new X509Certificate(roots[1]!.der).publicKey));
      const leafDir = ws.dir;
      const csr = makeCsr(leafDir, "after-root", { cn: "after-root.internal" });
      const answer = await postApi(`${d.apiUrl}/v1/sign`, await fetchRoots(d.publicUrl), { token: await ws.token("after-root", ["after-root.internal"]), body: signBody(csr.csrPem), headers: { connection: "close" } });
      expect(answer.status, answer.raw).toBe(201);
      writeFileSync(join(leafDir, "leaf.pem"), answer.body.certificate as string);
      // A host that trusts only the OLD root: leaf → new intermediate → cross certificate → old root.
      writeFileSync(join(leafDir, "untrusted.pem"), (answer.body.chain as string) + toPem(cross[0]!.der, "CERTIFICATE"));
      const viaCross = opensslAll(["verify", "-x509_strict", "-CAfile", join(leafDir, "old-root.pem"), "-untrusted", join(leafDir, "untrusted.pem"), join(leafDir, "leaf.pem")]);
      expect(viaCross.code, viaCross.out).toBe(0);
      // A host that trusts the new root: leaf → new intermediate → new root.
      writeFileSync(join(leafDir, "new-root.pem"), toPem(roots[1]!.der, "CERTIFICATE"));
      const direct = opensslAll(["verify", "-x509_strict", "-CAfile", join(leafDir, "new-root.pem"), "-untrusted", join(leafDir, "untrusted.pem"), join(leafDir, "leaf.pem")]);
      expect(direct.code, direct.out).toBe(0);
      expect(fresh).toMatch(/^[0-9a-f]{40}$/);

      // Now the old root can go; the daemon stops serving it.
      const retire = await ws.cli(["retire", "root", roots[0]!.key_id]);
      expect(retire.code, retire.stderr).toBe(0);
      expect(retire.stdout).toBe(`retired root ${roots[0]!.key_id}; trusted roots now: ${roots[1]!.key_id}\n`);
      const { seen: after } = await eventually(5_000, "/roots.pem serves the new root alone", bundle, (b) => b.length === 1);
      expect(Buffer.from(after[0]!).equals(roots[1]!.der)).toBe(true);
      expect((await ws.cli(["retire", "root", roots[1]!.key_id])).stderr).toMatch(/is the only active root/);
    } finally {
      await d.stop();
    }
  });
});

describe("fleetca rotate root with public workers", () => {
  const ws = new CaWorkspace({ passphrase: "root rotation passphrase", listen: "publicWorkers: 2" });
  beforeAll(async () => expect((await ws.cli(["init"])).code).toBe(0));
  afterAll(() => ws.remove());

  it("the workers serve the new root's CRL and the new bundle without a restart", { timeout: 90_000 }, async () => {
    const d = await ws.start();
    try {
      const r = await ws.cli(["rotate", "root"]);
      expect(r.code, r.stderr).toBe(0);
      const newRoot = /^new root ([0-9a-f]{40})/.exec(r.stdout)![1]!;
      // Fresh connections: node:cluster spreads them over both workers.
      const fromAll = async <T>(get: () => Promise<T>) => Promise.all(Array.from({ length: 6 }, get));
      await eventually(
        5_000,
        "every worker serves the new root's CRL",
        () => fromAll(async () => (await fetch(`${d.publicUrl}/crl/${newRoot}`, { headers: { connection: "close" } })).status),
        (statuses) => statuses.every((s) => s === 200),
      );
      const { seen } = await eventually(
        5_000,
        "every worker serves both roots and the cross certificate",
        () => fromAll(async () => allPem(await (await fetch(`${d.publicUrl}/roots.pem`, { headers: { connection: "close" } })).text(), "CERTIFICATE").length),
        (counts) => counts.every((n) => n === 3),
      );
      expect(seen).toHaveLength(6);
      const crls = await (await fetch(`${d.publicUrl}/crls.pem`, { headers: { connection: "close" } })).text();
      expect(allPem(crls, "X509 CRL").length).toBeGreaterThanOrEqual(3);
    } finally {
      await d.stop();
    }
  });
});
