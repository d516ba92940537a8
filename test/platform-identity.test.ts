import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SignJWT } from "jose";
import { FakePlatform } from "../scripts/fake-platform.mjs";
import { ManualClock } from "../src/core/clock.js";
import type { Daemon } from "../src/cli/daemon.js";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { startInProcess } from "./harness/in-process.js";
import { makeCsr, openssl } from "./harness/openssl.js";
import { fetchRoots, postApi, signBody, type ApiResponse } from "./harness/http.js";

/**
 * Platform identity (issue 3): a GCE-style jwt provisioner and a Kubernetes provisioner verify
 * tokens minted by a local identity-platform simulator, and decide SANs from verified claims only.
 */
const SIGN_AUD = "https://ca.test.internal:8443/v1/sign";
const now = () => Math.floor(Date.now() / 1000);

describe("jwt and kubernetes provisioners", () => {
  const gce = new FakePlatform({ alg: "ES256" });
  const k8s = new FakePlatform({ alg: "RS256" });
  const rsaImpostor = new FakePlatform({ alg: "RS256" }); // same issuer as gce, RS256 keys
  let ws: CaWorkspace;
  let daemon: Daemon;
  let roots: string;
  const clock = new ManualClock();

  beforeAll(async () => {
    await Promise.all([gce.start(), k8s.start(), rsaImpostor.start()]);
    ws = new CaWorkspace({
      extraConfig: `apiUrl: https://ca.test.internal:8443
provisioners:
  - { name: bootstrap, type: bootstrap }
  - name: gce
    type: jwt
    issuer: https://accounts.google.com
    audience: ${SIGN_AUD}
    jwks: { url: ${gce.jwksUrl}, refetchCooldown: 30s }
    algorithms: [ES256]
    maxTokenAge: 10m
    jti: absent
    requiredClaims: { google.compute_engine.project_id: [proj-a, proj-b] }
    sans:
      dns: ["{google.compute_engine.instance_name}.{google.compute_engine.zone}.c.{google.compute_engine.project_id}.internal"]
      uri: ["spiffe://example.org/gce/{google.compute_engine.project_id}/{google.compute_engine.instance_name}"]
  - name: k8s
    type: kubernetes
    issuer: https://kubernetes.default.svc.cluster.local
    audience: fleetca
    jwks: { url: ${k8s.jwksUrl} }
    trustDomain: example.org
    namespaces: [prod]
`,
    });
    ({ daemon } = await startInProcess(ws, clock));
    roots = await fetchRoots(daemon.publicUrl);
  });
  afterAll(async () => {
    await daemon?.close();
    await Promise.all([gce.stop(), k8s.stop(), rsaImpostor.stop()]);
    ws?.remove();
  });

  let n = 0;
  const csrFor = (opts: { cn?: string; sans?: string[] } = {}) => makeCsr(ws.dir, `host-${++n}`, opts).csrPem;
  const sign = (token: string, csrPem = csrFor()): Promise<ApiResponse> =>
    postApi(`${daemon.apiUrl}/v1/sign`, roots, { token, body: signBody(csrPem) });
  const gceToken = (o: Partial<Parameters<FakePlatform["mintGce"]>[0]> = {}) =>
    gce.mintGce({ aud: SIGN_AUD, instanceName: "web-1", projectId: "proj-a", ...o });
  const k8sToken = (o: Partial<Parameters<FakePlatform["mintK8s"]>[0]> = {}) =>
    k8s.mintK8s({ aud: "fleetca", namespace: "prod", serviceAccount: "api", ...o });

  async function expectRefused(res: Promise<ApiResponse>, status: number, error: string, reason?: RegExp) {
    const before = ws.rowCounts();
    const r = await res;
    expect(r.status, r.raw).toBe(status);
    expect(r.body.error).toBe(error);
    if (reason) expect(r.body.message).toMatch(reason);
    expect(ws.rowCounts()).toEqual(before);
  }

  describe("grant the names the verified claims allow", () => {
    it("a GCE instance identity token yields its templated DNS and SPIFFE names", async () => {
      const r = await sign(await gceToken());
      expect(r.status, r.raw).toBe(201);
      const text = openssl(["x509", "-noout", "-ext", "subjectAltName"], { input: r.body.certificate });
      expect(text).toContain("DNS:web-1.us-central1-a.c.proj-a.internal");
      expect(text).toContain("URI:spiffe://example.org/gce/proj-a/web-1");
      const listed = JSON.parse((await ws.cli(["list", "--json"])).stdout) as Array<{ serial: string; provisioner: string }>;
      expect(listed.find((c) => c.serial === r.body.serial)?.provisioner).toBe("gce");
    });

    it("a CSR may ask for a subset of the templated names", async () => {
      const r = await sign(await gceToken({ instanceName: "web-2" }), csrFor({ cn: "web-2.us-central1-a.c.proj-a.internal" }));
      expect(r.status, r.raw).toBe(201);
      const text = openssl(["x509", "-noout", "-ext", "subjectAltName"], { input: r.body.certificate });
      expect(text).not.toContain("URI:");
    });

    it("a Kubernetes projected token yields spiffe://trust-domain/ns/NS/sa/SA", async () => {
      const r = await sign(await k8sToken());
      expect(r.status, r.raw).toBe(201);
      const text = openssl(["x509", "-noout", "-ext", "subjectAltName"], { input: r.body.certificate });
      expect(text).toContain("URI:spiffe://example.org/ns/prod/sa/api");
    });
  });

  describe("misuse matrix: 401/403 with the SPEC reason, nothing stored", () => {
    it("alg none", async () => {
      const good = await gceToken({ instanceName: "m1" });
      const [, payload] = good.split(".");
      const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
      await expectRefused(sign(none), 401, "unauthorized", /^alg_not_allowed/);
    });

    it("HS256 signed with the JWKS public key (algorithm confusion)", async () => {
      const jwk = gce.jwks().keys.find((k) => k.kid === gce.kid)!;
      const hs = await new SignJWT({ google: { compute_engine: { instance_name: "m2", project_id: "proj-a", zone: "us-central1-a" } } })
        .setProtectedHeader({ alg: "HS256", kid: gce.kid, typ: "JWT" })
        .setIssuer("https://accounts.google.com")
        .setAudience(SIGN_AUD)
        .setSubject("1")
        .setIssuedAt()
        .setExpirationTime("5m")
        .sign(new TextEncoder().encode(JSON.stringify(jwk)));
      await expectRefused(sign(hs), 401, "unauthorized", /^alg_not_allowed/);
    });

    it("RS256 token presented to an ES256-only provisioner", async () => {
      const rs = await rsaImpostor.mintGce({ aud: SIGN_AUD, instanceName: "m3", projectId: "proj-a" });
      await expectRefused(sign(rs), 401, "unauthorized", /^alg_not_allowed/);
    });

    it("expired", async () => {
      await expectRefused(sign(await gceToken({ instanceName: "m4", iat: now() - 7200, exp: now() - 3600 })), 401, "unauthorized", /^expired/);
    });

    it("nbf in the future", async () => {
      await expectRefused(sign(await gceToken({ instanceName: "m5", nbf: now() + 3600 })), 401, "unauthorized", /^not_yet_valid/);
    });

    it("iat older than maxTokenAge", async () => {
      await expectRefused(
        sign(await gceToken({ instanceName: "m6", iat: now() - 20 * 60, exp: now() + 40 * 60 })),
        401,
        "unauthorized",
        /^expired: token is older than the provisioner's maxTokenAge/,
      );
    });

    it("wrong aud", async () => {
      await expectRefused(sign(await gceToken({ instanceName: "m7", aud: "https://other-ca.example/v1/sign" })), 401, "unauthorized", /^wrong_audience/);
    });

    it("wrong iss", async () => {
      await expectRefused(sign(await gceToken({ instanceName: "m8", claims: { iss: "https://accounts.evil.example" } })), 401, "unauthorized", /^wrong_issuer/);
    });

    it("unknown kid", async () => {
      await expectRefused(sign(await gceToken({ instanceName: "m9", header: { kid: "not-a-known-kid" } })), 401, "unauthorized", /^unknown_kid/);
    });

    it("tampered payload", async () => {
      const [h, p, s] = (await gceToken({ instanceName: "m10" })).split(".") as [string, string, string];
      const claims = JSON.parse(Buffer.from(p, "base64url").toString());
      claims.google.compute_engine.instance_name = "db-master";
      const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
      await expectRefused(sign(forged), 401, "unauthorized", /^bad_signature/);
    });

    it("replayed jti (Kubernetes) and replayed (iss, sub, iat) where the platform sets no jti (GCE)", async () => {
      const kt = await k8sToken({ serviceAccount: "worker" });
      expect((await sign(kt)).status).toBe(201);
      await expectRefused(sign(kt), 401, "unauthorized", /^replayed/);
      const gt = await gceToken({ instanceName: "m11" });
      expect((await sign(gt)).status).toBe(201);
      await expectRefused(sign(gt), 401, "unauthorized", /^replayed/);
    });

    it("a jti-less token where the platform is configured to always set one", async () => {
      await expectRefused(sign(await k8sToken({ jti: null })), 401, "unauthorized", /^missing_claim: jti/);
    });

    it("a claim value with '.' trying to widen a templated DNS name", async () => {
      // "web-1.us-central1-a.c.proj-b" would let an instance of proj-a name itself into proj-b.
      await expectRefused(sign(await gceToken({ instanceName: "web-1.us-central1-a.c.proj-b" })), 403, "forbidden", /characters not allowed/);
    });

    it("a claim value with '/' trying to widen a templated URI", async () => {
      await expectRefused(sign(await k8sToken({ serviceAccount: "api/../../admin" })), 403, "forbidden", /characters not allowed/);
    });

    it("a wildcard or space in a claim value", async () => {
      await expectRefused(sign(await gceToken({ instanceName: "*" })), 403, "forbidden", /characters not allowed/);
      await expectRefused(sign(await gceToken({ instanceName: "web 1" })), 403, "forbidden", /characters not allowed/);
    });

    it("a CSR asking for a SAN outside the template", async () => {
      await expectRefused(sign(await gceToken({ instanceName: "m12" }), csrFor({ cn: "db-master.us-central1-a.c.proj-a.internal" })), 403, "forbidden", /not authorised/);
    });

    it("a project the provisioner does not accept (requiredClaims)", async () => {
      await expectRefused(sign(await gceToken({ instanceName: "m13", projectId: "proj-z" })), 403, "forbidden", /project_id/);
    });

    it("a Kubernetes token from a namespace not allowed", async () => {
      await expectRefused(sign(await k8sToken({ namespace: "dev" })), 403, "forbidden", /namespace "dev" is not allowed/);
    });

    it("a Kubernetes token for another audience", async () => {
      await expectRefused(sign(await k8sToken({ aud: "vault" })), 401, "unauthorized", /^wrong_audience/);
    });
  });

  it("follows a platform key rotation without restart, refetching at most once per cooldown", async () => {
    await gce.rotate({ dropOld: true });
    const fetchesBefore = gce.jwksRequests;
    // Within the cooldown of the last fetch (the unknown-kid probe above), a new kid is not yet known...
    await expectRefused(sign(await gceToken({ instanceName: "r1" })), 401, "unauthorized", /^unknown_kid/);
    await expectRefused(sign(await gceToken({ instanceName: "r2" })), 401, "unauthorized", /^unknown_kid/);
    expect(gce.jwksRequests).toBe(fetchesBefore);
    // ...once the cooldown has passed, the first unknown kid triggers exactly one refetch.
    clock.advance(31_000);
    const r = await sign(await gceToken({ instanceName: "r3" }));
    expect(r.status, r.raw).toBe(201);
    expect(gce.jwksRequests).toBe(fetchesBefore + 1);
    expect((await sign(await gceToken({ instanceName: "r4" }))).status).toBe(201);
    expect(gce.jwksRequests).toBe(fetchesBefore + 1);
  });
});
