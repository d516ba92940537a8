/**
 * /healthz's database probe (api/health-check.ts) behind the asynchronous HealthProbe port: a
 * database that answers is healthy; one whose ping rejects, answers false, or does not answer
 * within the bound is reported (the router answers 503 for any error), and a hung database never
 * holds /healthz past the bound. The signer probed is a real P-256 key behind a real CA
 * certificate; the database probe stands in for a PostgreSQL pool in each state.
 */
import { generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { createHealthCheck } from "../src/api/health-check.js";
import { ManualClock } from "../src/core/clock.js";
import { SIGNATURE_SCHEMES } from "../src/core/key-type.js";
import { bindIssuer, type Issuer } from "../src/issuance/issuer.js";
import { serializeTbs, signTbs } from "../src/issuance/sign-tbs.js";
import type { Signer } from "../src/signing/signer.js";
import type { HealthProbe } from "../src/storage/ports.js";
import { keyIdentifier } from "../src/x509/certificate-info.js";
import { caTbs, nameOf } from "../src/x509/profile.js";

const HOUR = 3_600_000;

async function testIssuer(): Promise<Issuer> {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const signer: Signer = {
    keyType: "ecdsa-p256",
    publicKeySpki: publicKey.export({ type: "spki", format: "der" }),
    sign: async (data) => cryptoSign("sha256", data, { key: privateKey, dsaEncoding: "der" }),
  };
  const now = Date.now();
  const tbs = caTbs({
    serialContent: Uint8Array.of(1),
    subject: nameOf({ o: "test", cn: "health CA" }),
    subjectSpki: signer.publicKeySpki,
    subjectKeyId: keyIdentifier(signer.publicKeySpki),
    selfScheme: SIGNATURE_SCHEMES["ecdsa-p256"],
    pathLen: 0,
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 1000 * HOUR),
  });
  return bindIssuer(await signTbs(signer, serializeTbs(tbs)), signer);
}

describe("/healthz's database probe", () => {
  let issuer: Issuer;
  beforeAll(async () => {
    issuer = await testIssuer();
  });
  const check = (probe: HealthProbe, timeoutMs = 200) => createHealthCheck(probe, issuer, new ManualClock(), () => ({ errors: [], warnings: [] }), timeoutMs)();

  it("a database that answers: no error", async () => {
    expect(await check({ ping: async () => true })).toEqual({ errors: [], warnings: [] });
  });

  it("a ping that answers false, rejects, or throws: the database does not answer", async () => {
    const problem = { errors: ["database does not answer"], warnings: [] };
    expect(await check({ ping: async () => false })).toEqual(problem);
    expect(await check({ ping: () => Promise.reject(new Error("connection refused")) })).toEqual(problem);
    expect(
      await check({
        ping: () => {
          throw new Error("pool closed");
        },
      }),
    ).toEqual(problem);
  });

  it("a database that hangs: reported once the bound passes, not waited for", async () => {
    const started = performance.now();
    const report = await check({ ping: () => new Promise<boolean>(() => {}) }, 300);
    const took = performance.now() - started;
    expect(report.errors).toEqual(["database does not answer"]);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(2_000);
  });

  it("a slow database that answers within the bound is healthy", async () => {
    const slow: HealthProbe = { ping: () => new Promise((resolve) => setTimeout(() => resolve(true), 50)) };
    expect(await check(slow, 1_000)).toEqual({ errors: [], warnings: [] });
  });
});
