import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/core/clock.js";
import { CaError } from "../src/core/errors.js";
import type { CertificateRecord } from "../src/storage/ports.js";
import { lifecyclesFromConfig } from "../src/registration/provisioner-lifecycle.js";
import { loadConfig } from "../src/config/load.js";
import { CaClient } from "./harness/ca-client.js";
import type { ApiResponse } from "./harness/http.js";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { startInProcess } from "./harness/in-process.js";

/**
 * Provisioners own their certificates' lifecycle (issue 15): lifetimes per provisioner, and a
 * renewal is the provisioner's decision too: it must still be configured, allow renewal, and the
 * chain of renewals may run at most maxRenewalAge from the token that started it.
 */
const MIN = 60_000;
const HOUR = 60 * MIN;

function expectRefused(r: ApiResponse, status: number, code: string, reason: string): void {
  expect(r.status, r.raw).toBe(status);
  expect(r.body.error).toBe(code);
  expect(r.body.message).toMatch(new RegExp(`^${reason}`));
}

const lifetimeOf = (r: ApiResponse) => Date.parse(r.body.notAfter as string) - Date.parse(r.body.notBefore as string) - MIN; // minus the 1 min backdating

describe("provisioner lifecycle rules (unit)", () => {
  const rules = lifecyclesFromConfig(
    [
      { name: "a", allowRenewal: true, maxRenewalAge: 2 * HOUR, renewAfterExpiry: false, mayIssueAdmin: false },
      { name: "b", defaultTTL: 10 * MIN, maxTTL: HOUR, allowRenewal: false, maxRenewalAge: 2 * HOUR, renewAfterExpiry: true, mayIssueAdmin: true },
    ],
    { defaultTTL: 24 * HOUR, maxTTL: 168 * HOUR },
    [{ provisioner: "b", san: "spiffe://example.org/admin" }],
  );
  const t0 = new Date("2026-12-01T00:00:00Z");
  const record = (over: Partial<CertificateRecord>): CertificateRecord => ({
    serial: "01" as never, issuerKeyId: "k", sans: { dns: ["a.internal"], ip: [], uri: [] }, subjectCommonName: null, notBefore: t0,
    notAfter: new Date(t0.getTime() + HOUR), der: new Uint8Array(), provisioner: "a", tokenId: null, status: "valid", revokedAt: null,
    revocationReason: null, createdAt: t0, renewedFrom: null, crlShard: null, ...over,
  });
  const reasonOf = (f: () => unknown) => {
    try {
      f();
      return "allowed";
    } catch (e) {
      return e instanceof CaError ? `${e.code} ${e.message.split(":")[0]}` : String(e);
    }
  };

  it("takes a provisioner's own lifetimes, within the CA-wide ones", () => {
    expect(rules.ttlFor("a", undefined)).toBe(24 * HOUR);
    expect(rules.ttlFor("a", 500 * HOUR)).toBe(168 * HOUR);
    expect(rules.ttlFor("b", undefined)).toBe(10 * MIN);
    expect(rules.ttlFor("b", 5 * HOUR)).toBe(HOUR);
  });

  it("names why a renewal is refused", () => {
    const at = (ms: number) => new Date(t0.getTime() + ms);
    expect(reasonOf(() => rules.authorizeRenew(record({}), at(30 * MIN)))).toBe("allowed");
    expect(reasonOf(() => rules.authorizeRenew(record({ provisioner: "gone" }), at(30 * MIN)))).toBe("forbidden provisioner_removed");
    expect(reasonOf(() => rules.authorizeRenew(record({ provisioner: "b" }), at(30 * MIN)))).toBe("forbidden renewal_not_allowed");
    expect(reasonOf(() => rules.authorizeRenew(record({ supersededBy: "02" as never }), at(30 * MIN)))).toBe("forbidden superseded");
    // An admin SAN its provisioner may not issue (any more) is not re-issued by a renewal.
    const adminSans = { dns: [], ip: [], uri: ["spiffe://example.org/admin"] };
    expect(reasonOf(() => rules.authorizeRenew(record({ sans: adminSans }), at(30 * MIN)))).toBe("forbidden admin_san");
    // The age counts from the chain's attestation, not from this certificate.
    const late = record({ createdAt: at(110 * MIN), notBefore: at(110 * MIN), notAfter: at(170 * MIN), attestedAt: t0 });
    expect(reasonOf(() => rules.authorizeRenew(late, at(119 * MIN)))).toBe("allowed");
    expect(reasonOf(() => rules.authorizeRenew(late, at(121 * MIN)))).toBe("forbidden renewal_age_exceeded");
    // RFC 5280 §4.1.2.5: notAfter itself is inside the validity period.
    expect(reasonOf(() => rules.authorizeRenew(record({}), at(HOUR)))).toBe("allowed");
    expect(reasonOf(() => rules.authorizeRenew(record({}), at(HOUR + 1)))).toBe("unauthorized expired");
  });

  it("refuses, at config load, lifetimes outside the CA-wide bounds", () => {
    const ws = new CaWorkspace({ extraConfig: "provisioners:\n  - { name: bootstrap, type: bootstrap, maxTTL: 200h }\n" });
    try {
      expect(() => loadConfig(ws.configPath, {})).toThrow(/provisioners\.0\.maxTTL.*must not exceed issuance\.maxTTL/);
      writeFileSync(ws.configPath, readFileSync(ws.configPath, "utf8").replace("maxTTL: 200h", "maxTTL: 1h"));
      // issuance.defaultTTL (24h) would exceed this provisioner's 1h: it must say its own default.
      expect(() => loadConfig(ws.configPath, {})).toThrow(/provisioners\.0\.defaultTTL/);
    } finally {
      ws.remove();
    }
  });
});

describe("provisioners own renewal (real daemon, injected clock, real TLS)", () => {
  const ws = new CaWorkspace({
    extraConfig: `provisioners:
  - { name: bootstrap, type: bootstrap }
  - { name: short, type: bootstrap, defaultTTL: 10m, maxTTL: 1h, maxRenewalAge: 2h }
  - { name: norenew, type: bootstrap, allowRenewal: false }
  - { name: lapse, type: bootstrap, defaultTTL: 10m, renewAfterExpiry: true, maxRenewalAge: 3h }
  - { name: gone, type: bootstrap }
`,
  });
  afterAll(() => ws.remove());

  it("applies each provisioner's lifetimes, renewal switch, renewal age and renewal after expiry", async () => {
    const clock = new ManualClock(new Date());
    const { daemon } = await startInProcess(ws, clock);
    try {
      const client = (p: string) => new CaClient(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`, "--provisioner", p]).init();
      const [short, norenew, lapse, plain] = await Promise.all([client("short"), client("norenew"), client("lapse"), client("bootstrap")]);
      // Every token is spent while the CA's clock is the real one (tokens carry real times).
      const s0 = await short.issue("short-0", ["short-0.internal"], { ttl: "5h" });
      expect(lifetimeOf({ body: s0 } as unknown as ApiResponse)).toBe(HOUR); // clamped to the provisioner's maxTTL
      const d0 = await short.issue("short-d", ["short-d.internal"]);
      expect(lifetimeOf({ body: d0 } as unknown as ApiResponse)).toBe(10 * MIN); // its defaultTTL
      const n0 = await norenew.issue("norenew-0", ["norenew-0.internal"]);
      const l0 = await lapse.issue("lapse-0", ["lapse-0.internal"]);
      const p0 = await plain.issue("plain-0", ["plain-0.internal"], { ttl: "10m" });

      expectRefused(await norenew.renew(n0.identity), 403, "forbidden", "renewal_not_allowed");

      // A chain of renewals under maxRenewalAge 2h: fine at 40 and 90 minutes, refused at 130.
      clock.advance(40 * MIN);
      const s1 = await short.renew(s0.identity, { ttl: "1h" });
      expect(s1.status, s1.raw).toBe(201);
      clock.advance(50 * MIN);
      const s2 = await short.renew(short.keep("short-1", s1.body, s0.keyPath).identity, { ttl: "1h" });
      expect(s2.status, s2.raw).toBe(201);
      clock.advance(40 * MIN);
      expectRefused(await short.renew(short.keep("short-2", s2.body, s0.keyPath).identity), 403, "forbidden", "renewal_age_exceeded");

      // 130 minutes in: the 10-minute certificates have expired. Only `lapse` renews after expiry.
      const l1 = await lapse.renew(l0.identity);
      expect(l1.status, l1.raw).toBe(201);
      expect(Date.parse(l1.body.notAfter as string)).toBeGreaterThan(clock.now().getTime());
      expectRefused(await plain.renew(p0.identity), 401, "unauthorized", "expired");
      // An expired certificate is good for renewal only, never for reading records.
      expect((await lapse.record(l0.identity, l0.serial)).status).toBe(401);
    } finally {
      await daemon.close();
    }
  });

  it("refuses to renew a certificate whose provisioner was removed from the config", async () => {
    let { daemon } = await startInProcess(ws, new ManualClock(new Date()));
    let issued;
    try {
      const gone = await new CaClient(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`, "--provisioner", "gone"]).init();
      issued = await gone.issue("gone-0", ["gone-0.internal"]);
    } finally {
      await daemon.close();
    }
    writeFileSync(ws.configPath, readFileSync(ws.configPath, "utf8").replace("  - { name: gone, type: bootstrap }\n", ""));
    ({ daemon } = await startInProcess(ws, new ManualClock(new Date())));
    try {
      const c = await new CaClient(ws, daemon.apiUrl, daemon.publicUrl).init();
      const before = ws.rowCounts();
      expectRefused(await c.renew(issued.identity), 403, "forbidden", "provisioner_removed");
      expect(ws.rowCounts()).toEqual(before);
    } finally {
      await daemon.close();
    }
  });
});
