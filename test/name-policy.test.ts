import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sansFromList } from "../src/core/sans.js";
import { loadConfig } from "../src/config/load.js";
import { NamePolicy, type NamePolicyConfig } from "../src/registration/name-policy.js";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient } from "./harness/ca-client.js";
import { postApi, signBody, type ApiResponse } from "./harness/http.js";
import { makeCsr } from "./harness/openssl.js";

/** Why `names` are refused under `policy`, or null. */
const refusal = (policy: NamePolicyConfig, ...names: string[]) => NamePolicy.fromConfig(policy).refusal(sansFromList(names));

describe("name policy matching (RFC 5280 §4.2.1.10 semantics, deny wins)", () => {
  it("matches DNS suffixes on label boundaries only", () => {
    const p = { dns: { allow: ["example.org"] } };
    expect(refusal(p, "example.org")).toBeNull();
    expect(refusal(p, "a.example.org", "b.c.example.org")).toBeNull();
    expect(refusal(p, "badexample.org")).toMatch(/^dns SAN "badexample.org" is outside policy\.dns\.allow \(example\.org\)/);
    expect(refusal(p, "example.org.evil.com")).toMatch(/outside policy\.dns\.allow/);
    // A leading period: subdomains only, not the name itself.
    const sub = { dns: { allow: [".internal"] } };
    expect(refusal(sub, "web-1.internal")).toBeNull();
    expect(refusal(sub, "internal")).toMatch(/outside/);
    expect(refusal(sub, "notinternal")).toMatch(/outside/);
    // Rules are DNS names: case and a trailing dot do not matter.
    expect(refusal({ dns: { allow: ["Example.ORG."] } }, "a.example.org")).toBeNull();
  });

  it("lets a deny rule win over an allow rule, for the name and everything below it", () => {
    const p = { dns: { allow: ["example.org"], deny: ["bad.example.org"] } };
    expect(refusal(p, "good.example.org")).toBeNull();
    expect(refusal(p, "bad.example.org")).toMatch(/^dns SAN "bad.example.org" is denied by policy\.dns\.deny "bad\.example\.org"/);
    expect(refusal(p, "x.bad.example.org")).toMatch(/denied by policy\.dns\.deny/);
    expect(refusal(p, "notbad.example.org")).toBeNull();
    // Deny alone: anything else passes.
    expect(refusal({ ip: { deny: ["10.0.0.0/8"] } }, "10.9.9.9")).toMatch(/denied by policy\.ip\.deny "10\.0\.0\.0\/8"/);
    expect(refusal({ ip: { deny: ["10.0.0.0/8"] } }, "11.0.0.1")).toBeNull();
  });

  it("matches IPv4 and IPv6 CIDR ranges exactly at their edges", () => {
    const p = { ip: { allow: ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"] } };
    expect(refusal(p, "10.0.0.0", "10.255.255.255", "192.168.1.7")).toBeNull();
    expect(refusal(p, "11.0.0.0")).toMatch(/^ip SAN "11.0.0.0" is outside policy\.ip\.allow/);
    expect(refusal(p, "9.255.255.255")).toMatch(/outside/);
    expect(refusal(p, "192.168.1.8")).toMatch(/outside/);
    expect(refusal(p, "2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")).toBeNull();
    expect(refusal(p, "2001:db9::")).toMatch(/outside/);
    expect(refusal(p, "2001:db7:ffff::1")).toMatch(/outside/);
    // An IPv6 range says nothing about IPv4 addresses and back.
    expect(refusal({ ip: { allow: ["::/0"] } }, "10.0.0.1")).toMatch(/outside/);
    expect(refusal({ ip: { allow: ["0.0.0.0/0"] } }, "fd00::1")).toMatch(/outside/);
    // ...except the IPv4-mapped form, which is the IPv4 host: it cannot slip past a deny.
    expect(refusal({ ip: { deny: ["10.0.0.0/8"] } }, "::ffff:10.0.0.1")).toMatch(/denied by policy\.ip\.deny "10\.0\.0\.0\/8"/);
    expect(refusal({ ip: { allow: ["fd00::/8"], deny: ["fd00:bad::/32"] } }, "fd00:bad:0:1::5")).toMatch(/denied/);
    expect(refusal({ ip: { allow: ["fd00::/8"] } }, "fd12:3456::1")).toBeNull();
  });

  it("compares URI prefixes on scheme, authority and whole path segments, without prefix tricks", () => {
    const p = { uri: { allow: ["spiffe://example.org/"] } };
    expect(refusal(p, "spiffe://example.org/ns/prod/sa/web")).toBeNull();
    expect(refusal(p, "spiffe://EXAMPLE.org/web")).toBeNull(); // host case (RFC 3986 §6.2.2.1)
    expect(refusal(p, "spiffe://example.org.evil/web")).toMatch(/^uri SAN "spiffe:\/\/example.org.evil\/web" is outside policy\.uri\.allow/);
    expect(refusal(p, "spiffe://example.orgevil/web")).toMatch(/outside/);
    expect(refusal(p, "spiffe://example.org:8443/web")).toMatch(/outside/);
    expect(refusal(p, "https://example.org/web")).toMatch(/outside/);
    const ns = { uri: { allow: ["spiffe://example.org/ns/prod"] } };
    expect(refusal(ns, "spiffe://example.org/ns/prod")).toBeNull();
    expect(refusal(ns, "spiffe://example.org/ns/prod/sa/web")).toBeNull();
    expect(refusal(ns, "spiffe://example.org/ns/production/sa/web")).toMatch(/outside/);
    // Dot segments would let a prefix match text that names another path once resolved.
    expect(refusal(ns, "spiffe://example.org/ns/prod/../../admin")).toMatch(/cannot be compared with policy\.uri/);
    const deny = { uri: { deny: ["spiffe://example.org/admin"] } };
    expect(refusal(deny, "spiffe://example.org/admin")).toMatch(/denied by policy\.uri\.deny/);
    expect(refusal(deny, "spiffe://example.org/admin/x")).toMatch(/denied/);
    expect(refusal(deny, "spiffe://Example.Org./admin")).toMatch(/denied/); // trailing dot, case
    expect(refusal(deny, "spiffe://example.org/%61dmin")).toMatch(/denied/); // encoded unreserved (RFC 3986 §6.2.2.2)
    expect(refusal(deny, "spiffe://example.org/admin%2Fx")).toMatch(/cannot be compared/);
    expect(refusal(deny, "spiffe://example.org/adminx")).toBeNull();
    expect(refusal(deny, "spiffe://example.org/web")).toBeNull();
  });

  it("refuses every name of a kind whose allow list is empty; no policy allows everything", () => {
    expect(refusal({ ip: { allow: [] } }, "10.0.0.1")).toMatch(/outside policy\.ip\.allow \(empty: no ip SANs are allowed\)/);
    expect(refusal({ ip: { allow: [] } }, "a.example.org")).toBeNull();
    expect(refusal({}, "anything.example", "192.0.2.1", "spiffe://any/where")).toBeNull();
  });

  it.each([
    ["a CIDR that is not one", "ip: { allow: [10.0.0.0/33] }", /policy\.ip\.allow\.0: "10\.0\.0\.0\/33": the prefix length must be 0\.\.32/],
    ["host bits below the prefix", "ip: { deny: [10.0.0.1/8] }", /policy\.ip\.deny\.0: "10\.0\.0\.1\/8" has host bits set/],
    ["not an address", "ip: { allow: [10.0.0.0/8, ten.0.0.0/8] }", /policy\.ip\.allow\.1: "ten\.0\.0\.0\/8" is not an IP address or CIDR range/],
    ["a wildcard DNS rule", 'dns: { allow: ["*.example.org"] }', /policy\.dns\.allow\.0: .*wildcards are not rules/],
    ["a URI prefix without a host", 'uri: { allow: ["spiffe:example.org"] }', /policy\.uri\.allow\.0: .*is not a URI prefix/],
    ["an unknown kind", "email: { allow: [a] }", /policy: unknown key\(s\) email/],
  ])("refuses at load a policy with %s, in one line naming the key", (_n, rules, expected) => {
    const dir = mkdtempSync(join(tmpdir(), "fleetca-policy-"));
    try {
      writeFileSync(join(dir, "c.yaml"), `policy: { ${rules} }\n`);
      expect(() => loadConfig(join(dir, "c.yaml"), {})).toThrow(expected);
      try {
        loadConfig(join(dir, "c.yaml"), {});
      } catch (e) {
        expect((e as Error).message).not.toContain("\n");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const POLICY = `policy:
  dns: { allow: [example.org], deny: [bad.example.org] }
  ip: { allow: [10.0.0.0/8, "fd00::/8"] }
  uri: { allow: ["spiffe://example.org/"] }
`;

describe("name policy at /v1/sign and /v1/renew (real daemon, real TLS, openssl CSRs)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  beforeAll(async () => {
    ws = new CaWorkspace({ extraConfig: POLICY });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  });
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  let n = 0;
  const sign = (token: string, csrSans: string[]): Promise<ApiResponse> =>
    postApi(`${ca.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(makeCsr(ws.dir, `p-${++n}`, { sans: csrSans }).csrPem) });

  /** The token allows both names; the CSR asks for the refused one first, then (same token) for the allowed one. */
  async function refusedThenIssued(tokenSans: string[], refused: string, allowed: string, reason: RegExp): Promise<void> {
    const token = await ws.token("policy-host", tokenSans);
    const before = ws.rowCounts();
    const r = await sign(token, [refused]);
    expect(r.status, r.raw).toBe(403);
    expect(r.body.error).toBe("forbidden");
    expect(r.body.message).toMatch(reason);
    // Nothing stored, the token not spent: the very same token then gets the allowed name.
    expect(ws.rowCounts()).toEqual(before);
    const ok = await sign(token, [allowed]);
    expect(ok.status, ok.raw).toBe(201);
    expect(ws.rowCounts().certificates).toBe(before.certificates! + 1);
    expect(ws.rowCounts().used_tokens).toBe(before.used_tokens! + 1);
  }

  it("refuses a denied DNS suffix with 403 naming SAN and rule; the token still works for an allowed CSR", async () => {
    await refusedThenIssued(
      ["web.bad.example.org", "web.example.org"],
      "DNS:web.bad.example.org",
      "DNS:web.example.org",
      /^name_policy: dns SAN "web\.bad\.example\.org" is denied by policy\.dns\.deny "bad\.example\.org"$/,
    );
    const list = JSON.parse((await ws.cli(["list", "--json"])).stdout) as Array<{ sans: string[] }>;
    expect(list.flatMap((c) => c.sans)).not.toContain("web.bad.example.org");
    expect(list.flatMap((c) => c.sans)).toContain("web.example.org");
  });

  it("refuses an IP outside the allowed ranges", async () => {
    await refusedThenIssued(["192.168.1.5", "10.1.2.3"], "IP:192.168.1.5", "IP:10.1.2.3", /^name_policy: ip SAN "192\.168\.1\.5" is outside policy\.ip\.allow \(10\.0\.0\.0\/8, fd00::\/8\)$/);
    await refusedThenIssued(["fe80::1", "fd00::7"], "IP:fe80::1", "IP:fd00::7", /^name_policy: ip SAN "fe80::1" is outside policy\.ip\.allow/);
  });

  it("refuses a URI outside the allowed prefix, including a look-alike host", async () => {
    await refusedThenIssued(
      ["spiffe://example.org.evil/web", "spiffe://example.org/web"],
      "URI:spiffe://example.org.evil/web",
      "URI:spiffe://example.org/web",
      /^name_policy: uri SAN "spiffe:\/\/example\.org\.evil\/web" is outside policy\.uri\.allow \(spiffe:\/\/example\.org\/\)$/,
    );
  });

  it("checks the SANs a CSR without SANs gets (everything the token lists)", async () => {
    const token = await ws.token("everything", ["ok.example.org", "10.0.0.9", "other.example.net"]);
    const before = ws.rowCounts();
    const r = await sign(token, []);
    expect(r.status, r.raw).toBe(403);
    expect(r.body.message).toMatch(/dns SAN "other\.example\.net" is outside policy\.dns\.allow/);
    expect(ws.rowCounts()).toEqual(before);
  });

  it("refuses the renewal of a certificate the policy no longer allows (config changed, restart)", async () => {
    const legacy = await ca.issue("legacy", ["legacy.example.org"]);
    const kept = await ca.issue("kept", ["kept.example.org"]);
    await d.stop();
    writeFileSync(ws.configPath, `dataDir: ${ws.dataDir}\nlisten: { api: "127.0.0.1:0", public: "127.0.0.1:0" }\n${POLICY.replace("deny: [bad.example.org]", "deny: [bad.example.org, legacy.example.org]")}`);
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    const before = ws.rowCounts();
    const r = await ca.renew(legacy.identity);
    expect(r.status, r.raw).toBe(403);
    expect(r.body.error).toBe("forbidden");
    expect(r.body.message).toBe('name_policy: dns SAN "legacy.example.org" is denied by policy.dns.deny "legacy.example.org"');
    expect(ws.rowCounts()).toEqual(before);
    // A rekeying renewal is refused the same way; a name still allowed renews.
    const rekey = await ca.renew(legacy.identity, { csr: makeCsr(ws.dir, "legacy-rekey", { sans: ["DNS:legacy.example.org"] }).csrPem });
    expect(rekey.status, rekey.raw).toBe(403);
    const ok = await ca.renew(kept.identity);
    expect(ok.status, ok.raw).toBe(201);
  });
});
