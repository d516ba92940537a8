/**
 * Refreshing the agent's trust bundle: which new /roots.pem bundles the pinned root vouches for
 * (itself, or a cross certificate it signed for a new root), and that the pin never moves.
 * Roots and cross certificates are made here from test-generated keys.
 */
import "reflect-metadata";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webcrypto } from "node:crypto";
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
} from "@peculiar/x509";
import { acceptRefreshedRoots, acceptRoots, bootstrapTrust, refreshTrust, sha256Hex, type TrustAnchors } from "../src/agent/trust.js";
import { toPem } from "../src/x509/pem.js";
import { agentWorkspace, rootFingerprint } from "./harness/cert-agent.js";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";

const subtle = webcrypto.subtle as unknown as SubtleCrypto;
const ECDSA = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const H = 3_600_000;
const NOW = new Date();

interface Root {
  name: string;
  keys: CryptoKeyPair;
  der: Buffer;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(ECDSA, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** A CA certificate for `subject`'s name and key, signed by `by` (self-signed when by === subject). */
async function caCert(
  subject: { name: string; keys: CryptoKeyPair },
  by: { name: string; keys: CryptoKeyPair },
  validity = { from: -H, to: 24 * H },
  keyIds = false,
): Promise<Buffer> {
  // Key identifiers as fleetca's own CA certificates carry them (RFC 5280 §4.2.1.1, §4.2.1.2):
  // with them, "issued by" also means the AKID matches the issuer's SKID, not only the name.
  const ids = keyIds
    ? [await SubjectKeyIdentifierExtension.create(subject.keys.publicKey), await AuthorityKeyIdentifierExtension.create(by.keys.publicKey)]
    : [];
  const c = await X509CertificateGenerator.create({
    subject: `CN=${subject.name}`,
    issuer: `CN=${by.name}`,
    notBefore: new Date(NOW.getTime() + validity.from),
    notAfter: new Date(NOW.getTime() + validity.to),
    publicKey: subject.keys.publicKey,
    signingKey: by.keys.privateKey,
    signingAlgorithm: ECDSA,
    extensions: [new BasicConstraintsExtension(true, 1, true), new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true), ...ids],
  });
  return Buffer.from(c.rawData);
}

async function root(name: string): Promise<Root> {
  const keys = await newKeys();
  return { name, keys, der: await caCert({ name, keys }, { name, keys }) };
}

const bundle = (...ders: Buffer[]) => ders.map((d) => toPem(d, "CERTIFICATE")).join("");

describe("acceptRefreshedRoots (pure)", () => {
  let r1: Root; // the pinned root
  let r2: Root; // its successor
  let r3: Root; // a successor's successor
  let evil: Root;
  let cross: Buffer; // r2's name and key, certified by r1
  let pin: string;
  let current: TrustAnchors;

  beforeAll(async () => {
    [r1, r2, r3, evil] = await Promise.all([root("Fleet Root CA 1"), root("Fleet Root CA 2"), root("Fleet Root CA 3"), root("Fleet Root CA 1")]);
    cross = await caCert(r2, r1);
    pin = sha256Hex(r1.der);
    current = acceptRoots(bundle(r1.der), pin);
  });

  it("returns null for an unchanged bundle, whatever the order", () => {
    expect(acceptRefreshedRoots(bundle(r1.der), current, pin, NOW)).toBeNull();
    const two = acceptRefreshedRoots(bundle(r1.der, r2.der), current, pin, NOW)!;
    expect(acceptRefreshedRoots(bundle(r2.der, r1.der), two, pin, NOW)).toBeNull();
  });

  it("accepts a bundle that still holds the pinned root beside a new one", () => {
    const next = acceptRefreshedRoots(bundle(r1.der, r2.der), current, pin, NOW)!;
    expect(next.ders.map(sha256Hex)).toEqual([pin, sha256Hex(r2.der)]);
    expect(next.pem).toBe(bundle(r1.der, r2.der));
    expect(sha256Hex(next.pinnedRoot!)).toBe(pin);
  });

  it("accepts a new root cross-signed by the pinned root once the pinned root is gone; the pin stays", () => {
    const next = acceptRefreshedRoots(bundle(r2.der, cross), current, pin, NOW)!;
    expect(next.ders.map(sha256Hex)).toEqual([sha256Hex(r2.der), sha256Hex(cross)]);
    // The pinned root's DER is kept though the bundle dropped it: later refreshes are judged by it.
    expect(sha256Hex(next.pinnedRoot!)).toBe(pin);
    expect(acceptRefreshedRoots(bundle(r2.der, cross), next, pin, NOW)).toBeNull();
    // With the cross certificate gone (old root retired), nothing ties the bundle to the pin: refused.
    expect(() => acceptRefreshedRoots(bundle(r2.der), next, pin, NOW)).toThrow(/refusing the CA's new roots: none is the pinned root or cross-signed by it/);
  });

  it("cannot walk the pin: a root cross-signed by an accepted new root, not by the pinned one, is refused", async () => {
    const next = acceptRefreshedRoots(bundle(r2.der, cross), current, pin, NOW)!;
    const cross32 = await caCert(r3, r2);
    expect(() => acceptRefreshedRoots(bundle(r3.der, cross32), next, pin, NOW)).toThrow(/none is the pinned root or cross-signed by it/);
  });

  it("refuses a bundle holding only an unrelated root (even one with the pinned root's name)", () => {
    expect(() => acceptRefreshedRoots(bundle(evil.der), current, pin, NOW)).toThrow(/refusing the CA's new roots: none is the pinned root or cross-signed by it/);
  });

  it("refuses a cross certificate with a bad signature, or signed by another key under the pinned root's name", async () => {
    const bad = Buffer.from(cross);
    bad[bad.length - 1]! ^= 0x01; // last octet of the signature BIT STRING
    expect(() => acceptRefreshedRoots(bundle(r2.der, bad), current, pin, NOW)).toThrow(/none is the pinned root or cross-signed by it/);
    const forged = await caCert(r2, evil); // issuer name "Fleet Root CA 1", evil's key
    expect(() => acceptRefreshedRoots(bundle(r2.der, forged), current, pin, NOW)).toThrow(/none is the pinned root or cross-signed by it/);
  });

  it("refuses a cross certificate whose key is not the new root's, and one outside its validity", async () => {
    const otherKey = await caCert({ name: r2.name, keys: (await root("x")).keys }, r1);
    expect(() => acceptRefreshedRoots(bundle(r2.der, otherKey), current, pin, NOW)).toThrow(/none is the pinned root/);
    const expired = await caCert(r2, r1, { from: -48 * H, to: -H });
    expect(() => acceptRefreshedRoots(bundle(r2.der, expired), current, pin, NOW)).toThrow(/none is the pinned root/);
    // The same cross certificate, judged while it was valid, is accepted.
    expect(acceptRefreshedRoots(bundle(r2.der, expired), current, pin, new Date(NOW.getTime() - 2 * H))).not.toBeNull();
  });

  it("a new root with the same name as the pinned one (as `fleetca rotate root` names it), key identifiers included", async () => {
    const name = "fleetca Root CA";
    const oldKeys = await newKeys();
    const newRootKeys = await newKeys();
    const old = await caCert({ name, keys: oldKeys }, { name, keys: oldKeys }, undefined, true);
    const fresh = await caCert({ name, keys: newRootKeys }, { name, keys: newRootKeys }, undefined, true);
    const x = await caCert({ name, keys: newRootKeys }, { name, keys: oldKeys }, undefined, true); // self-issued, not self-signed
    const p = sha256Hex(old);
    const cur = acceptRoots(bundle(old), p);
    expect(acceptRefreshedRoots(bundle(fresh, x), cur, p, NOW)?.ders.map(sha256Hex)).toEqual([sha256Hex(fresh), sha256Hex(x)]);
    // The "cross" certificate of another key under the same name does not vouch for the new root.
    const impostorKeys = await newKeys();
    const y = await caCert({ name, keys: newRootKeys }, { name, keys: impostorKeys }, undefined, true);
    expect(() => acceptRefreshedRoots(bundle(fresh, y), cur, p, NOW)).toThrow(/none is the pinned root/);
  });

  it("refuses an empty bundle", () => {
    expect(() => acceptRefreshedRoots("", current, pin, NOW)).toThrow(/held no certificates/);
  });
});

describe("refreshTrust against the real daemon", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  beforeAll(async () => {
    ws = await agentWorkspace();
    d = await ws.start();
  }, 30_000);
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("returns null while /roots.pem is unchanged, and verifies the CA's TLS against the current anchors", async () => {
    const fp = await rootFingerprint(d.publicUrl);
    const anchors = await bootstrapTrust(d.apiUrl, fp);
    expect(await refreshTrust(d.apiUrl, anchors, fp)).toBeNull();
    // Anchors that do not hold the CA's root: the TLS handshake itself fails (no insecure fetch).
    const stranger = await root("Stranger Root");
    const wrong: TrustAnchors = { pem: bundle(stranger.der), ders: [stranger.der] };
    await expect(refreshTrust(d.apiUrl, wrong, fp)).rejects.toThrow(/cannot reach .*(certificate|issuer)/i);
  }, 20_000);
});
