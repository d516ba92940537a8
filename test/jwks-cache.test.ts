/**
 * JwksSource keeps one key set, with jose's resolver and its imported keys, per JWKS content: the
 * same snapshot serves every token until a reload brings different keys, which replaces it.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT, jwtVerify } from "jose";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { JwksSource } from "../src/attestation/jwks.js";
import { ManualClock } from "../src/core/clock.js";

function platformKey(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" } };
}

describe("JwksSource snapshots", () => {
  const dir = mkdtempSync(join(tmpdir(), "fleetca-jwks-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "jwks.json");
  const a = platformKey("a");
  const b = platformKey("b");
  const token = (k: typeof a) => new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: k.kid }).setIssuer("p").setExpirationTime("5m").sign(k.privateKey);

  it("reuses the resolver across tokens and replaces it when the keys change", async () => {
    writeFileSync(file, JSON.stringify({ keys: [a.jwk] }));
    const clock = new ManualClock();
    const src = new JwksSource({ file, maxAgeMs: 60_000, refetchCooldownMs: 1_000 }, clock, pino({ level: "silent" }));
    const first = await src.keysFor("a");
    expect(await src.keysFor("a")).toBe(first);
    expect(first.resolver).toBe(first.resolver);
    for (let i = 0; i < 3; i++) expect((await jwtVerify(await token(a), first.resolver)).payload.iss).toBe("p");

    // A reload of the same content (maxAge passed) keeps the snapshot and its imported keys.
    clock.advance(61_000);
    expect(await src.keysFor("a")).toBe(first);

    // Rotation: a token naming an unknown kid reloads (past the cooldown); new content, new snapshot.
    writeFileSync(file, JSON.stringify({ keys: [b.jwk] }));
    clock.advance(2_000);
    const second = await src.keysFor("b");
    expect(second).not.toBe(first);
    expect(second.keys.keys.map((k) => k.kid)).toEqual(["b"]);
    expect((await jwtVerify(await token(b), second.resolver)).payload.iss).toBe("p");
    await expect(jwtVerify(await token(a), second.resolver)).rejects.toThrow();
  });
});
