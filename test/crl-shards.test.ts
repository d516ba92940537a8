import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { openssl, opensslAll } from "./harness/openssl.js";
import { eventually } from "./harness/eventually.js";

const ADMIN_SAN = "spiffe://fleet.test/admin";
const SHARDS = 4;

interface CrlText {
  number: number;
  text: string;
  serials: Set<string>;
}

describe(`partitioned CRLs (crl.shards: ${SHARDS}), the root CRL and /crls.pem (real daemon, openssl)`, () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  let admin: Issued;
  let caFile: string;
  let interKid: string;
  let rootKid: string;
  const leaves: Array<Issued & { shard: number; name: string }> = [];
  let files = 0;

  const keyIdOf = (pem: string) =>
    openssl(["x509", "-noout", "-ext", "subjectKeyIdentifier"], { input: pem }).split("\n")[1]!.trim().replace(/:/g, "").toLowerCase();

  /** GET a CRL, check its signature with openssl against the CA's certificates, and read it. */
  const fetchCrl = async (path: string): Promise<CrlText & { der: Buffer; file: string }> => {
    const r = await fetch(`${d.publicUrl}${path}`);
    expect(r.status, path).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/pkix-crl");
    const der = Buffer.from(await r.arrayBuffer());
    const file = join(ws.dir, `shard-${++files}.crl`);
    writeFileSync(file, der);
    const v = opensslAll(["crl", "-inform", "DER", "-in", file, "-CAfile", caFile, "-noout", "-text"]);
    expect(v.code, v.out.slice(0, 400)).toBe(0);
    expect(v.out).toContain("verify OK");
    return {
      der,
      file,
      text: v.out,
      number: Number(/X509v3 CRL Number:\s*\n\s*(\d+)/.exec(v.out)?.[1]),
      serials: new Set([...v.out.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.toLowerCase())),
    };
  };

  beforeAll(async () => {
    ws = new CaWorkspace({ extraConfig: `admins: ["${ADMIN_SAN}"]\ncrl: { shards: ${SHARDS} }\n` });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    caFile = join(ws.dir, "ca.pem");
    writeFileSync(caFile, ca.roots + ca.intermediatePem);
    interKid = keyIdOf(ca.intermediatePem);
    rootKid = keyIdOf(ca.roots);
    admin = await ca.issue("admin", [ADMIN_SAN], {}, ["--admin"]);
    // Serials are random: issue until every partition has at least two certificates.
    for (let i = 0; i < 40 && !Array.from({ length: SHARDS }, (_, n) => leaves.filter((l) => l.shard === n).length >= 2).every(Boolean); i++) {
      const c = await ca.issue(`leaf-${i}`);
      const cdp = openssl(["x509", "-in", c.certPath, "-noout", "-ext", "crlDistributionPoints"]);
      const m = new RegExp(`URI:${d.publicUrl}/crl/${interKid}/(\\d+)\\s`).exec(cdp + "\n");
      expect(m, cdp).not.toBeNull();
      leaves.push({ ...c, shard: Number(m![1]), name: `leaf-${i}` });
    }
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("names its own partition in every certificate; each partition is a CRL with a critical IDP naming exactly its URL", async () => {
    for (let n = 0; n < SHARDS; n++) expect(leaves.some((l) => l.shard === n)).toBe(true);
    for (let n = 0; n < SHARDS; n++) {
      const c = await fetchCrl(`/crl/${interKid}/${n}`);
      // (openssl prints "Only User Certificates" right after the URI, on the same line.)
      expect(c.text).toMatch(/X509v3 Issuing Distribution Point: critical\s*\n\s*Full Name:\s*\n\s*URI:(\S+)\s+Only User Certificates/);
      expect(/Full Name:\s*\n\s*URI:(\S+)/.exec(c.text)![1]).toBe(`${d.publicUrl}/crl/${interKid}/${n}`);
      expect(c.serials.size).toBe(0);
    }
    const full = await fetchCrl(`/crl/${interKid}`);
    expect(full.text).not.toContain("Issuing Distribution Point");
    expect((await fetch(`${d.publicUrl}/crl/${interKid}/${SHARDS + 10}`)).status).toBe(404);
    expect((await fetch(`${d.publicUrl}/crl/${interKid}/x`)).status).toBe(404);
  });

  it("lists a revoked certificate in exactly its partition and re-signs only that one; openssl -crl_check refuses it", async () => {
    const before = await Promise.all(Array.from({ length: SHARDS }, (_, n) => fetchCrl(`/crl/${interKid}/${n}`)));
    const victim = leaves.find((l) => l.shard === 2)!;
    const r = await ca.revoke(admin.identity, { serial: victim.serial, reason: "keyCompromise" });
    expect(r.status, r.raw).toBe(200);

    // SPEC: within 5 s.
    await eventually(5_000, "partition 2 lists the revocation", () => fetchCrl(`/crl/${interKid}/2`), (c) => c.serials.has(victim.serial));
    const after = await Promise.all(Array.from({ length: SHARDS }, (_, n) => fetchCrl(`/crl/${interKid}/${n}`)));
    for (let n = 0; n < SHARDS; n++) {
      if (n === 2) {
        expect(after[n]!.number).toBeGreaterThan(before[n]!.number);
        expect([...after[n]!.serials]).toEqual([victim.serial]);
      } else {
        // Untouched partitions keep their CRL (same number, same bytes).
        expect(after[n]!.number).toBe(before[n]!.number);
        expect(after[n]!.der.equals(before[n]!.der)).toBe(true);
      }
    }
    const full = await fetchCrl(`/crl/${interKid}`);
    expect(full.serials.has(victim.serial)).toBe(true);

    const shardPem = join(ws.dir, "shard-2.pem");
    writeFileSync(shardPem, openssl(["crl", "-inform", "DER", "-in", after[2]!.file]));
    const verify = (leaf: Issued, crlFile: string, flag: string) =>
      opensslAll(["verify", flag, "-CRLfile", crlFile, "-CAfile", ca.rootsPath, "-untrusted", ca.intermediatePath, leaf.certPath]);
    const refused = verify(victim, shardPem, "-crl_check");
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/certificate revoked/);
    const sibling = leaves.find((l) => l.shard === 2 && l.serial !== victim.serial)!;
    const accepted = verify(sibling, shardPem, "-crl_check");
    expect(accepted.code, accepted.out).toBe(0);
  });

  it("serves the root's CRL (signed at init, empty) at the URL in the intermediate's CRL distribution point", async () => {
    const cdp = openssl(["x509", "-in", ca.intermediatePath, "-noout", "-ext", "crlDistributionPoints"]);
    expect(cdp).toContain(`URI:${d.publicUrl}/crl/${rootKid}`);
    const root = await fetchCrl(`/crl/${rootKid}`);
    expect(root.text).toMatch(/Issuer: O = fleetca, CN = fleetca Root CA/);
    expect(root.text).toContain("No Revoked Certificates.");
    const days = (Date.parse(/Next Update: (.+)/.exec(root.text)![1]!) - Date.parse(/Last Update: (.+)/.exec(root.text)![1]!)) / 86_400_000;
    expect(days).toBe(30);

    // `fleetca crl sign-root` re-signs it (the daemon serves the new one within a tick).
    const signed = await ws.cli(["crl", "sign-root"]);
    expect(signed.code, signed.stderr).toBe(0);
    expect(signed.stdout).toMatch(new RegExp(`^signed root CRL #${root.number + 1} of ${rootKid}: 0 revoked intermediate\\(s\\), next update \\S+\\n$`));
  });

  it("serves every current CRL as one PEM bundle that openssl's whole-chain CRL check (nginx ssl_crl) accepts", async () => {
    const r = await fetch(`${d.publicUrl}/crls.pem`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/x-pem-file/);
    const bundle = await r.text();
    expect(bundle.match(/-----BEGIN X509 CRL-----/g)).toHaveLength(1 + 1 + SHARDS); // root, full, partitions
    const bundlePath = join(ws.dir, "crls.pem");
    writeFileSync(bundlePath, bundle);
    const verifyAll = (leaf: Issued) =>
      opensslAll(["verify", "-crl_check_all", "-CRLfile", bundlePath, "-CAfile", ca.rootsPath, "-untrusted", ca.intermediatePath, leaf.certPath]);
    const revoked = leaves.find((l) => l.shard === 2)!;
    for (const l of leaves) {
      const v = verifyAll(l);
      if (l.serial === revoked.serial) {
        expect(v.code).not.toBe(0);
        expect(v.out).toMatch(/certificate revoked/);
      } else {
        expect(v.code, `${l.name}: ${v.out}`).toBe(0);
      }
    }
    const health = await fetch(`${d.publicUrl}/healthz`);
    expect(await health.json()).toEqual({ status: "ok" });
  });
});
