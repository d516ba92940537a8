import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { BulkClient, inParallel, mintTokens } from "./harness/bulk.js";
import { makeCsr, opensslAll } from "./harness/openssl.js";
import { eventually } from "./harness/eventually.js";
import { signBody } from "./harness/http.js";

const ADMIN_SAN = "spiffe://fleet.test/admin";
/** Past the ~1,250 entries where asn1js's 10,000-node cap stalled publication (issue 11). */
const REVOKED = 5_000;

/** Serials (lower-case hex) `openssl crl` lists, after it checked the signature against `caFile`. */
function crlSerials(dir: string, der: Buffer, caFile: string, name: string): Set<string> {
  const path = join(dir, `${name}.crl`);
  writeFileSync(path, der);
  const r = opensslAll(["crl", "-inform", "DER", "-in", path, "-CAfile", caFile, "-noout", "-text"]);
  expect(r.code, r.out.slice(0, 500)).toBe(0);
  expect(r.out).toContain("verify OK");
  return new Set([...r.out.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.toLowerCase()));
}

describe(`CRL publication with ${REVOKED} revoked certificates (real daemon, real API, openssl)`, () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  let admin: Issued;
  let caFile: string;
  const revoked = new Set<string>();

  beforeAll(async () => {
    ws = new CaWorkspace({ extraConfig: `admins: ["${ADMIN_SAN}"]\ncrl: { interval: 1h }\n`, memoryBacked: true });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    caFile = join(ws.dir, "ca.pem");
    writeFileSync(caFile, ca.roots + ca.intermediatePem);
    admin = await ca.issue("admin", [ADMIN_SAN], {}, ["--admin"]);
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("issues and revokes them through the API; /crl lists every one and verifies", async () => {
    const csr = makeCsr(ws.dir, "fleet");
    const tokens = await mintTokens(ws, `${d.apiUrl}/v1/sign`, REVOKED, (i) => [`host-${i}.fleet.internal`]);
    const signer = new BulkClient(d.apiUrl, ca.roots);
    const serials = await inParallel(REVOKED, 8, async (i) => {
      const r = await signer.post("/v1/sign", signBody(csr.csrPem), tokens[i]);
      expect(r.status, r.raw.slice(0, 200)).toBe(201);
      return r.body.serial as string;
    });
    signer.close();

    // Half with a reason code, half without: entries of both sizes (the old cap depended on it).
    const revoker = new BulkClient(d.apiUrl, ca.roots, admin.identity);
    await inParallel(REVOKED, 8, async (i) => {
      const body = JSON.stringify({ serial: serials[i], ...(i % 2 === 0 && { reason: "keyCompromise" }) });
      const r = await revoker.post("/v1/revoke", body);
      expect(r.status, r.raw.slice(0, 200)).toBe(200);
      revoked.add(serials[i]!);
    });
    revoker.close();

    // SPEC: a revocation shows in /crl within 5 s.
    const { seen } = await eventually(
      5_000,
      "/crl lists every revocation",
      async () => Buffer.from(await (await fetch(`${d.publicUrl}/crl`)).arrayBuffer()),
      (der) => crlSerials(ws.dir, der, caFile, "probe").size === REVOKED,
    );
    const listed = crlSerials(ws.dir, seen, caFile, "after-revocations");
    for (const s of revoked) expect(listed.has(s)).toBe(true);
    const health = await fetch(`${d.publicUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    expect(d.output).not.toMatch(/CRL publication failed/);
  }, 240_000);

  it("restarts and serves them at once, and picks up a revocation made while it was down", async () => {
    const before = Buffer.from(await (await fetch(`${d.publicUrl}/crl`)).arrayBuffer());
    await d.stop();

    // Revoked offline by the operator: the stored CRL no longer matches the database.
    const late = await (async () => {
      const d2 = await ws.start();
      const c = new CaClient(ws, d2.apiUrl, d2.publicUrl);
      await c.init();
      const issued = await c.issue("late");
      await d2.stop();
      return issued.serial;
    })();
    const offline = await ws.cli(["revoke", late, "--reason", "superseded"]);
    expect(offline.code, offline.stderr).toBe(0);

    d = await ws.start();
    const health = await fetch(`${d.publicUrl}/healthz`);
    expect(health.status).toBe(200);
    const { seen } = await eventually(
      10_000,
      "/crl after the restart lists the offline revocation",
      async () => Buffer.from(await (await fetch(`${d.publicUrl}/crl`)).arrayBuffer()),
      (der) => !der.equals(before),
    );
    const listed = crlSerials(ws.dir, seen, caFile, "after-restart");
    expect(listed.size).toBe(REVOKED + 1);
    expect(listed.has(late)).toBe(true);
    expect(d.output).toMatch(/msg="CRL published".*entries=5001.*why="revocations since the stored CRL was signed"/);
  }, 120_000);
});
