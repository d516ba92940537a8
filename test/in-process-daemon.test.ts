import { afterAll, describe, expect, it } from "vitest";
import * as tls from "node:tls";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { makeCsr, openssl } from "./harness/openssl.js";
import { fetchRoots, postApi, signBody } from "./harness/http.js";
import { ManualClock } from "../src/core/clock.js";
import { startInProcess } from "./harness/in-process.js";

function servedCertificate(apiUrl: string, roots: string): Promise<tls.PeerCertificate> {
  const u = new URL(apiUrl);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: roots, servername: "localhost" }, () => {
      resolve(s.getPeerCertificate());
      s.end();
    });
    s.on("error", reject);
  });
}

describe("API serving certificate", () => {
  const ws = new CaWorkspace({ extraConfig: "serverNames: [ca.fleet.internal]\n" });
  afterAll(() => ws.remove());

  it("is renewed at two thirds of its life and swapped in without a restart", async () => {
    // Start a little in the past so that "later" is still inside the real certificate validity
    // that node:tls checks against the real clock.
    const clock = new ManualClock(new Date(Date.now() - 20 * 3600_000));
    const { daemon, logs } = await startInProcess(ws, clock);
    try {
      const roots = await fetchRoots(daemon.publicUrl);
      const first = await servedCertificate(daemon.apiUrl, roots);
      expect(first.subjectaltname).toContain("DNS:ca.fleet.internal");

      clock.advance(10 * 3600_000); // 10 h of a 24 h life: not yet due
      await daemon.tick();
      expect((await servedCertificate(daemon.apiUrl, roots)).serialNumber).toBe(first.serialNumber);

      clock.advance(7 * 3600_000); // 17 h: past 16 h, renewal is due
      await daemon.tick();
      const second = await servedCertificate(daemon.apiUrl, roots);
      expect(second.serialNumber).not.toBe(first.serialNumber);
      expect(logs.join("")).toMatch(/msg="api serving certificate renewed"/);

      // The same listener keeps serving requests (the CA clock back at real time for the token).
      clock.set(new Date());
      const token = await ws.token("web-9", ["web-9.internal"], ["--aud", `${daemon.apiUrl}/v1/sign`]);
      const csr = makeCsr(ws.dir, "web-9", { cn: "web-9.internal" });
      const r = await postApi(`${daemon.apiUrl}/v1/sign`, roots, { token, body: signBody(csr.csrPem) });
      expect(r.status, r.raw).toBe(201);
    } finally {
      await daemon.close();
    }
  });
});

describe.each([
  ["ecdsa-p384", "rsa-2048"],
  ["ed25519", "ec-p256"],
  ["rsa-3072", "ed25519"],
] as const)("a %s hierarchy", (caKeyType, leafKeyType) => {
  const ws = new CaWorkspace({ extraConfig: `ca: { keyType: ${caKeyType} }\n` });
  afterAll(() => ws.remove());

  it(`issues a ${leafKeyType} leaf that openssl verifies`, async () => {
    const { daemon } = await startInProcess(ws, new ManualClock());
    try {
      const roots = await fetchRoots(daemon.publicUrl);
      writeFileSync(join(ws.dir, "roots.pem"), roots);
      const token = await ws.token("svc", ["svc.internal"], ["--aud", `${daemon.apiUrl}/v1/sign`]);
      const csr = makeCsr(ws.dir, "svc", { cn: "svc.internal", keyType: leafKeyType });
      const r = await postApi(`${daemon.apiUrl}/v1/sign`, roots, { token, body: signBody(csr.csrPem) });
      expect(r.status, r.raw).toBe(201);
      writeFileSync(join(ws.dir, "svc.crt"), r.body.certificate);
      writeFileSync(join(ws.dir, "chain.pem"), r.body.chain);
      const out = openssl(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", join(ws.dir, "roots.pem"), "-untrusted", join(ws.dir, "chain.pem"), join(ws.dir, "svc.crt")]);
      expect(out).toContain("OK");
      const text = openssl(["x509", "-in", join(ws.dir, "svc.crt"), "-noout", "-text"]);
      if (leafKeyType.startsWith("rsa")) expect(text).toMatch(/Digital Signature, Key Encipherment/);
      else expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    } finally {
      await daemon.close();
    }
  });
});
