import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify } from "jose";
import { FakePlatform } from "../scripts/fake-platform.mjs";

/**
 * The fake identity platform is test infrastructure: these tests pin its contract (token shapes,
 * JWKS over real HTTP, rotation) using jose's remote-JWKS verifier, i.e. the same path production
 * verifiers take against Google and kube-apiserver.
 */

const GCE_ISS = "https://accounts.google.com";
const K8S_ISS = "https://kubernetes.default.svc.cluster.local";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function postJson(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("FakePlatform (RS256)", () => {
  const p = new FakePlatform();
  let base = "";
  beforeAll(async () => {
    base = await p.start();
  });
  afterAll(() => p.stop());

  it("serves its JWKS and discovery document over HTTP and counts JWKS fetches", async () => {
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(p.url).toBe(base);
    expect(p.jwksUrl).toBe(`${base}/jwks`);

    const before = p.jwksRequests;
    const res = await fetch(p.jwksUrl);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("max-age=60");
    const body = (await res.json()) as { keys: Array<Record<string, unknown>> };
    expect(body).toEqual(p.jwks());
    expect(body.keys).toHaveLength(1);
    expect(body.keys[0]).toMatchObject({ kid: p.kid, alg: "RS256", use: "sig", kty: "RSA" });
    expect(body.keys[0]).not.toHaveProperty("d"); // public half only
    expect(p.jwksRequests).toBe(before + 1);

    const disco = await (await fetch(`${base}/.well-known/openid-configuration`)).json();
    expect(disco).toEqual({ issuer: GCE_ISS, jwks_uri: p.jwksUrl });
    expect(p.jwksRequests).toBe(before + 1); // discovery is not a JWKS fetch

    const missing = await fetch(`${base}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: "not found" });
    expect((await fetch(`${base}/jwks`, { method: "POST" })).status).toBe(404);
  });

  it("mints GCE instance identity tokens (full format) that verify against the remote JWKS", async () => {
    const jwks = createRemoteJWKSet(new URL(p.jwksUrl));
    const token = await p.mintGce({ aud: "https://ca.fleet.internal", instanceName: "web-1", projectId: "acme-prod" });
    const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: GCE_ISS, audience: "https://ca.fleet.internal" });

    expect(protectedHeader).toEqual({ alg: "RS256", kid: p.kid, typ: "JWT" });
    expect(payload).toMatchObject({
      iss: GCE_ISS,
      aud: "https://ca.fleet.internal",
      azp: "1122334455",
      sub: "1122334455",
      email_verified: true,
    });
    expect(payload).not.toHaveProperty("jti");
    expect(payload).not.toHaveProperty("nbf");
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(Math.abs(payload.iat! - Date.now() / 1000)).toBeLessThan(10);
    const ce = (payload.google as { compute_engine: Record<string, unknown> }).compute_engine;
    expect(ce).toMatchObject({ instance_name: "web-1", project_id: "acme-prod", zone: "us-central1-a" });
    expect(ce.instance_id).toMatch(/^\d{19}$/);
    expect(typeof ce.project_number).toBe("number");
    expect(typeof ce.instance_creation_timestamp).toBe("number");
    expect(payload.email).toBe(`${String(ce.project_number)}-compute@developer.gserviceaccount.com`);

    // Same instance, same identifiers: stable like a real platform.
    const again = decodeJwt(await p.mintGce({ aud: "x", instanceName: "web-1", projectId: "acme-prod" }));
    expect((again.google as { compute_engine: Record<string, unknown> }).compute_engine.instance_id).toBe(ce.instance_id);
    const other = decodeJwt(await p.mintGce({ aud: "x", instanceName: "web-2", projectId: "acme-prod", zone: "europe-west1-b" }));
    const ce2 = (other.google as { compute_engine: Record<string, unknown> }).compute_engine;
    expect(ce2.instance_id).not.toBe(ce.instance_id);
    expect(ce2.zone).toBe("europe-west1-b");
  });

  it("mints Kubernetes projected service-account tokens that verify against the remote JWKS", async () => {
    const jwks = createRemoteJWKSet(new URL(p.jwksUrl));
    const token = await p.mintK8s({ aud: "fleetca", namespace: "payments", serviceAccount: "api" });
    const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: K8S_ISS, audience: "fleetca" });

    expect(protectedHeader).toEqual({ alg: "RS256", kid: p.kid }); // kube-apiserver sends no typ
    expect(payload).toMatchObject({ iss: K8S_ISS, aud: ["fleetca"], sub: "system:serviceaccount:payments:api" });
    expect(payload.nbf).toBe(payload.iat);
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(payload.jti).toMatch(UUID);
    const k8s = payload["kubernetes.io"] as {
      namespace: string;
      pod: { name: string; uid: string };
      serviceaccount: { name: string; uid: string };
    };
    expect(k8s.namespace).toBe("payments");
    expect(k8s.serviceaccount.name).toBe("api");
    expect(k8s.serviceaccount.uid).toMatch(UUID);
    expect(k8s.pod.name).toEqual(expect.any(String));
    expect(k8s.pod.uid).toMatch(UUID);

    const second = decodeJwt(await p.mintK8s({ aud: "fleetca", namespace: "payments", serviceAccount: "api" }));
    expect(second.jti).not.toBe(payload.jti); // fresh jti per token
    expect(decodeJwt(await p.mintK8s({ aud: "a", namespace: "n", serviceAccount: "s", jti: null }))).not.toHaveProperty("jti");
    expect(decodeJwt(await p.mintK8s({ aud: "a", namespace: "n", serviceAccount: "s", jti: "fixed" })).jti).toBe("fixed");
  });

  it("lets negative tests override claims (deep merge), header and times", async () => {
    const jwks = createRemoteJWKSet(new URL(p.jwksUrl));
    const merged = decodeJwt(
      await p.mintGce({
        aud: "a",
        instanceName: "vm",
        projectId: "proj",
        claims: { google: { compute_engine: { zone: "mars-1-a" } }, email: undefined, extra: [1, 2] },
      }),
    );
    const ce = (merged.google as { compute_engine: Record<string, unknown> }).compute_engine;
    expect(ce).toMatchObject({ zone: "mars-1-a", instance_name: "vm", project_id: "proj" }); // siblings kept
    expect(merged).not.toHaveProperty("email");
    expect(merged.extra).toEqual([1, 2]);

    const k8s = decodeJwt(
      await p.mintK8s({ aud: "a", namespace: "n", serviceAccount: "s", claims: { "kubernetes.io": { pod: { name: "evil" } } } }),
    );
    expect((k8s["kubernetes.io"] as { pod: { name: string; uid: string } }).pod).toMatchObject({
      name: "evil",
      uid: expect.stringMatching(UUID),
    });

    const now = Math.floor(Date.now() / 1000);
    const expired = await p.mintGce({ aud: "a", instanceName: "vm", projectId: "proj", iat: now - 7200, exp: now - 3600 });
    await expect(jwtVerify(expired, jwks)).rejects.toBeInstanceOf(errors.JWTExpired);
    const future = await p.mintK8s({ aud: "a", namespace: "n", serviceAccount: "s", nbf: now + 3600 });
    await expect(jwtVerify(future, jwks)).rejects.toMatchObject({ code: "ERR_JWT_CLAIM_VALIDATION_FAILED", claim: "nbf" });

    const foreignKid = await p.mintGce({ aud: "a", instanceName: "vm", projectId: "proj", header: { kid: "not-ours" } });
    expect(decodeProtectedHeader(foreignKid).kid).toBe("not-ours");
    await expect(jwtVerify(foreignKid, createRemoteJWKSet(new URL(p.jwksUrl)))).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);

    // Mismatched alg for the key: jose refuses to sign.
    await expect(p.mint({ sub: "x" }, { alg: "ES256" })).rejects.toThrow();

    const raw = await p.mint({ anything: "goes" }, { typ: "at+jwt" });
    expect(decodeProtectedHeader(raw)).toEqual({ alg: "RS256", kid: p.kid, typ: "at+jwt" });
    expect((await jwtVerify(raw, jwks)).payload).toEqual({ anything: "goes" });
  });

  it("rotates keys: old key stays published, new tokens carry the new kid, dropOld revokes", async () => {
    const oldKid = p.kid;
    const oldToken = await p.mintK8s({ aud: "fleetca", namespace: "ns", serviceAccount: "sa" });

    // A verifier with jose's default 30s cooldown: it fetches once, then refuses to refetch on an
    // unknown kid until the cooldown passes. jwksRequests makes that rate limit observable.
    const cooled = createRemoteJWKSet(new URL(p.jwksUrl));
    const eager = createRemoteJWKSet(new URL(p.jwksUrl), { cooldownDuration: 0 });
    const n0 = p.jwksRequests;
    await jwtVerify(oldToken, cooled);
    await jwtVerify(oldToken, eager);
    expect(p.jwksRequests).toBe(n0 + 2);

    const newKid = await p.rotate();
    expect(newKid).not.toBe(oldKid);
    expect(p.kid).toBe(newKid);
    expect(p.jwks().keys.map((k) => k.kid)).toEqual([newKid, oldKid]);

    const newToken = await p.mintK8s({ aud: "fleetca", namespace: "ns", serviceAccount: "sa" });
    expect(decodeProtectedHeader(newToken).kid).toBe(newKid);

    await expect(jwtVerify(newToken, cooled)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    expect(p.jwksRequests).toBe(n0 + 2); // cooling down: no refetch

    const { protectedHeader } = await jwtVerify(newToken, eager); // unknown kid -> refetch
    expect(protectedHeader.kid).toBe(newKid);
    expect(p.jwksRequests).toBe(n0 + 3);
    await jwtVerify(oldToken, eager); // previous key still published
    expect(p.jwksRequests).toBe(n0 + 3); // ...and already cached

    const newest = await p.rotate({ dropOld: true });
    expect(p.jwks().keys.map((k) => k.kid)).toEqual([newest]);
    const fresh = createRemoteJWKSet(new URL(p.jwksUrl));
    await expect(jwtVerify(newToken, fresh)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    await expect(jwtVerify(oldToken, fresh)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    await jwtVerify(await p.mintGce({ aud: "a", instanceName: "vm", projectId: "p" }), fresh);

    // Two plain rotations: only the current and the immediately previous key are published.
    const r1 = await p.rotate();
    const r2 = await p.rotate();
    expect(p.jwks().keys.map((k) => k.kid)).toEqual([r2, r1]);
  });

  it("mints and rotates over HTTP for curl demos", async () => {
    const jwks = createRemoteJWKSet(new URL(p.jwksUrl), { cooldownDuration: 0 });

    const gce = await postJson(`${base}/mint/gce`, { aud: "demo", instanceName: "vm-9", projectId: "acme", zone: "asia-east1-a" });
    expect(gce.status).toBe(200);
    const g = await jwtVerify(gce.json.token as string, jwks, { issuer: GCE_ISS, audience: "demo" });
    expect((g.payload.google as { compute_engine: Record<string, unknown> }).compute_engine).toMatchObject({
      instance_name: "vm-9",
      zone: "asia-east1-a",
    });

    const k8s = await postJson(`${base}/mint/k8s`, { aud: "demo", namespace: "ns", serviceAccount: "sa", jti: null });
    expect(k8s.status).toBe(200);
    const k = await jwtVerify(k8s.json.token as string, jwks, { issuer: K8S_ISS, audience: "demo" });
    expect(k.payload.sub).toBe("system:serviceaccount:ns:sa");
    expect(k.payload).not.toHaveProperty("jti");

    const rotated = await postJson(`${base}/rotate`, {});
    expect(rotated.status).toBe(200);
    expect(rotated.json).toEqual({ kid: p.kid });

    const bad = await postJson(`${base}/mint/gce`, "{not json");
    expect(bad.status).toBe(400);
    const missing = await postJson(`${base}/mint/k8s`, { aud: "demo", namespace: "ns" });
    expect(missing.status).toBe(400);
    expect(missing.json.error).toMatch(/serviceAccount/);
    const notObject = await postJson(`${base}/mint/gce`, [1, 2]);
    expect(notObject.status).toBe(400);

    const huge = await postJson(`${base}/mint/gce`, { aud: "x".repeat(70 * 1024), instanceName: "i", projectId: "p" });
    expect(huge.status).toBe(413);
    // The server is still healthy afterwards.
    expect((await fetch(p.jwksUrl)).status).toBe(200);
  });
});

describe.each(["ES256", "EdDSA"] as const)("FakePlatform (%s)", (alg) => {
  const p = new FakePlatform({ alg, gceIssuer: "https://gce.test", k8sIssuer: "https://k8s.test" });
  afterAll(() => p.stop());

  it("signs and publishes keys with the chosen algorithm and issuers", async () => {
    await p.start();
    const jwks = createRemoteJWKSet(new URL(p.jwksUrl));
    expect(p.jwks().keys[0]).toMatchObject({ alg, use: "sig", kty: alg === "ES256" ? "EC" : "OKP" });
    const gce = await jwtVerify(await p.mintGce({ aud: "a", instanceName: "vm", projectId: "p" }), jwks, { issuer: "https://gce.test" });
    expect(gce.protectedHeader.alg).toBe(alg);
    const k8s = await jwtVerify(await p.mintK8s({ aud: "a", namespace: "n", serviceAccount: "s" }), jwks, { issuer: "https://k8s.test" });
    expect(k8s.protectedHeader).toEqual({ alg, kid: p.kid });
    expect(await (await fetch(`${p.url}/.well-known/openid-configuration`)).json()).toMatchObject({ issuer: "https://gce.test" });
  });
});

describe("fake-platform CLI", () => {
  it("prints its listening line, serves the JWKS and exits cleanly on SIGTERM", async () => {
    const script = fileURLToPath(new URL("../scripts/fake-platform.mjs", import.meta.url));
    const child = spawn(process.execPath, [script, "--port", "0", "--alg", "ES256"], { stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = "";
        let err = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => {
          out += d;
          const nl = out.indexOf("\n");
          if (nl >= 0) resolve(out.slice(0, nl));
        });
        child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
        child.once("exit", (code) => reject(new Error(`CLI exited early (${String(code)}): ${err}`)));
        setTimeout(() => reject(new Error(`no listening line within 20s: ${out} ${err}`)), 20_000).unref();
      });
      const m = /^fake-platform listening url=(http:\/\/127\.0\.0\.1:(\d+)) jwks=(\S+)$/.exec(line);
      expect(m, line).not.toBeNull();
      const [, url, , jwksUrl] = m!;
      expect(jwksUrl).toBe(`${url}/jwks`);
      const body = (await (await fetch(jwksUrl!)).json()) as { keys: Array<{ alg: string }> };
      expect(body.keys).toHaveLength(1);
      expect(body.keys[0]!.alg).toBe("ES256");
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });

  it("rejects bad arguments with exit code 2", async () => {
    const script = fileURLToPath(new URL("../scripts/fake-platform.mjs", import.meta.url));
    const child = spawn(process.execPath, [script, "--alg", "HS256"], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(2);
    expect(err).toMatch(/--alg/);
  });
});
