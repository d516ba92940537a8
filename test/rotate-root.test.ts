import Database from "better-sqlite3";
import { X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { acceptRefreshedRoots, acceptRoots, sha256Hex } from "../src/agent/trust.js";
import { toPem } from "../src/x509/pem.js";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { opensslAll } from "./harness/openssl.js";

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
    expect(newX.subject).not.toBe(oldX.subject);
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
});
