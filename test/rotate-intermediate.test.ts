import type { OpenedDataDir } from "../src/cli/data-dir.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { mtlsRequest } from "./harness/http.js";
import { openssl, opensslAll, opensslAsync } from "./harness/openssl.js";
import { toPem } from "../src/x509/pem.js";
import { ManualClock } from "../src/core/clock.js";
import { loadConfig } from "../src/config/load.js";
import { startInProcess } from "./harness/in-process.js";
import { rotateIntermediate } from "../src/cli/intermediate-rotation.js";
import { AGENT_BIN, agentWorkspace, rootFingerprint } from "./harness/cert-agent.js";

/**
 * `fleetca rotate intermediate` against a running daemon (real processes, real TLS, openssl):
 * the daemon issues from the new intermediate within 5 s without a restart, the old one keeps
 * answering OCSP and CRL for what it issued, its certificates renew (over mTLS) into the new one
 * and are given an early renewal window, and a fleet renewing across the rotation sees no failure.
 */

/** The subject key id (lower-case hex) of a PEM or DER certificate, as `fleetca` prints key ids. */
function keyIdOf(cert: string | Buffer): string {
  const out = openssl(["x509", "-noout", "-ext", "subjectKeyIdentifier"], { input: typeof cert === "string" ? cert : toPem(cert, "CERTIFICATE") });
  return out.split("\n")[1]!.trim().replace(/:/g, "").toLowerCase();
}

/** The CN of a certificate's subject, as openssl prints it among the acceptable client CA names. */
function cnOf(pem: string): string {
  return /CN=([^,\n]+)/.exec(new X509Certificate(pem).subject.replace(/\n/g, ","))![1]!;
}

/** True when `issuer` (PEM) signed `leaf` (PEM). */
function issuedBy(leaf: string, issuer: string): boolean {
  const l = new X509Certificate(leaf);
  const i = new X509Certificate(issuer);
  return l.checkIssued(i) && l.verify(i.publicKey);
}

async function intermediateOf(publicUrl: string): Promise<string> {
  return toPem(Buffer.from(await (await fetch(`${publicUrl}/intermediate.crt`)).arrayBuffer()), "CERTIFICATE");
}

/** `openssl verify -x509_strict` of a certificate and the chain the API handed out with it, under `/roots.pem` alone. */
function verifies(ca: CaClient, c: Issued): string {
  return openssl(["verify", "-x509_strict", "-CAfile", ca.rootsPath, "-untrusted", c.chainPath, c.certPath]).trim();
}

async function ocspStatus(ca: CaClient, publicUrl: string, issuerPath: string, c: Issued): Promise<string> {
  const r = await opensslAsync(["ocsp", "-timeout", "5", "-issuer", issuerPath, "-cert", c.certPath, "-url", `${publicUrl}/ocsp`, "-CAfile", ca.rootsPath]);
  return r.out;
}

function rotateOutput(stdout: string): { current: string; previous: string; matched: number; windowEnd: Date } {
  const current = /new intermediate key id:\s+([0-9a-f]+)/.exec(stdout)?.[1];
  const previous = /previous intermediate key id:\s+([0-9a-f]+)/.exec(stdout)?.[1];
  const m = /renewal window for its (\d+) live certificates? ?: \S+ to (\S+)/.exec(stdout);
  if (!current || !previous || !m) throw new Error(`unexpected rotate output:\n${stdout}`);
  return { current, previous, matched: Number(m[1]), windowEnd: new Date(m[2]!) };
}

describe("fleetca rotate intermediate while the daemon runs", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  }, 60_000);
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("refuses a --migrate-within under a minute with one line and changes nothing", async () => {
    const r = await ws.cli(["rotate", "intermediate", "--migrate-within", "10s"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^fleetca: --migrate-within: must be at least 1m/);
    expect(await intermediateOf(d.publicUrl)).toBe(ca.intermediatePem);
  });

  it("switches issuance within 5 s; the old intermediate keeps OCSP and CRL; its certs renew into the new one early", async () => {
    const oldIntermediate = ca.intermediatePem;
    const oldIntermediatePath = join(ws.dir, "old-intermediate.pem");
    writeFileSync(oldIntermediatePath, oldIntermediate);
    const oldKeyId = keyIdOf(oldIntermediate);
    const before = await ca.issue("before-1");
    const stays = await ca.issue("before-2");
    expect(issuedBy(before.certificate, oldIntermediate)).toBe(true);

    const r = await ws.cli(["rotate", "intermediate", "--migrate-within", "2h"]);
    expect(r.code, r.stderr).toBe(0);
    const out = rotateOutput(r.stdout);
    expect(out.previous).toBe(oldKeyId);
    expect(out.current).not.toBe(oldKeyId);
    // Both live leaves named (the API's own serving certificate is one more of the old intermediate's).
    expect(out.matched).toBeGreaterThanOrEqual(2);
    expect(out.windowEnd.getTime()).toBeLessThanOrEqual(Date.now() + 2 * 3_600_000);

    const { seen: newIntermediate, elapsedMs } = await eventually(5_000, "/intermediate.crt serves the new intermediate", () => intermediateOf(d.publicUrl), (p) => p !== oldIntermediate);
    expect(keyIdOf(newIntermediate)).toBe(out.current);
    expect(elapsedMs).toBeLessThan(5_000);
    await ca.init(); // relying parties fetch the new intermediate; roots.pem is unchanged

    // New issuance: from the new intermediate, with it as the chain.
    const after = await ca.issue("after-1");
    expect(after.chain).toBe(newIntermediate);
    expect(issuedBy(after.certificate, newIntermediate)).toBe(true);

    // The API's CertificateRequest names both intermediates (RFC 8446 §4.2.4), so a host holding
    // a certificate of the old one still offers it.
    const api = new URL(d.apiUrl);
    const { seen: handshake } = await eventually(
      5_000,
      "the API asks for client certificates of both intermediates",
      async () => (await opensslAsync(["s_client", "-connect", `${api.hostname}:${api.port}`, "-CAfile", ca.rootsPath, "-verify_quiet"])).out,
      (o) => o.includes(cnOf(oldIntermediate)) && o.includes(cnOf(newIntermediate)),
    );
    expect(handshake).toMatch(/Acceptable client certificate CA names/);

    // Both chains verify under /roots.pem alone.
    expect(verifies(ca, before)).toBe(`${before.certPath}: OK`);
    expect(verifies(ca, after)).toBe(`${after.certPath}: OK`);

    // The old intermediate still answers OCSP for what it issued (RFC 6960 §2.2), and so does the new one.
    expect(await ocspStatus(ca, d.publicUrl, oldIntermediatePath, before)).toMatch(/: good/);
    await eventually(5_000, "OCSP for the new intermediate's certificate", () => ocspStatus(ca, d.publicUrl, ca.intermediatePath, after), (o) => /: good/.test(o));

    // renewal-info: the old intermediate's certificates are due within --migrate-within.
    const info = await mtlsRequest(`${d.apiUrl}/v1/renewal-info/${stays.serial}`, ca.roots, { method: "GET" });
    expect(info.status, info.raw).toBe(200);
    const window = info.body.suggestedWindow as { start: string; end: string };
    expect(new Date(window.end).getTime()).toBeLessThanOrEqual(Date.now() + 2 * 3_600_000);
    expect(new Date(window.start).getTime()).toBeLessThanOrEqual(Date.now());
    // ... and the new intermediate's get the normal window (the override names the old one's only).
    const fresh = await mtlsRequest(`${d.apiUrl}/v1/renewal-info/${after.serial}`, ca.roots, { method: "GET" });
    expect(new Date((fresh.body.suggestedWindow as { start: string }).start).getTime()).toBeGreaterThan(Date.now() + 2 * 3_600_000);

    // Renewal over mTLS with the old intermediate's certificate: issued by the new one.
    const renewed = await ca.renew(before.identity);
    expect(renewed.status, renewed.raw).toBe(201);
    const next = ca.keep("before-1-renewed", renewed.body, before.keyPath);
    expect(next.chain).toBe(newIntermediate);
    expect(issuedBy(next.certificate, newIntermediate)).toBe(true);
    expect(verifies(ca, next)).toBe(`${next.certPath}: OK`);

    // A revocation of an old-intermediate certificate shows on the old issuer's CRL and OCSP.
    const revoked = await ca.revoke(stays.identity, { serial: stays.serial, reason: "superseded" });
    expect(revoked.status, revoked.raw).toBe(200);
    await eventually(5_000, "OCSP says revoked (old intermediate)", () => ocspStatus(ca, d.publicUrl, oldIntermediatePath, stays), (o) => /: revoked/.test(o));
    await eventually(
      5_000,
      "the old intermediate's CRL lists it",
      async () => {
        const der = Buffer.from(await (await fetch(`${d.publicUrl}/crl/${oldKeyId}`)).arrayBuffer());
        const crlPath = join(ws.dir, "old.crl");
        writeFileSync(crlPath, der);
        return openssl(["crl", "-inform", "DER", "-in", crlPath, "-noout", "-text"]).toUpperCase();
      },
      (t) => t.includes(stays.serial.toUpperCase()),
    );
    // ... and `openssl verify -crl_check` with the old intermediate's CRL refuses it, accepts its sibling.
    const crlPem = join(ws.dir, "old.crl.pem");
    writeFileSync(crlPem, openssl(["crl", "-inform", "DER", "-in", join(ws.dir, "old.crl")]));
    const check = (c: Issued) => opensslAll(["verify", "-crl_check", "-CRLfile", crlPem, "-CAfile", ca.rootsPath, "-untrusted", oldIntermediatePath, c.certPath]);
    expect(check(before)).toEqual({ code: 0, out: `${before.certPath}: OK\n` });
    const refused = check(stays);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/certificate revoked/);
  });
});

/**
 * The rotation drill: live renewers (mTLS renew of their current certificate every ~300 ms, the
 * way cert-agent renews) across a rotation. Not one renewal may fail; those after it come from the
 * new intermediate. Served by the primary alone, with public workers, and with API workers too.
 */
describe.each([
  { label: "primary only", listen: undefined },
  { label: "publicWorkers: 2", listen: "publicWorkers: 2" },
  // API workers renew on their own connection and CA: they follow the issuers table themselves.
  { label: "apiWorkers: 2, publicWorkers: 2", listen: "apiWorkers: 2, publicWorkers: 2" },
])("rotation drill ($label)", ({ listen }) => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;

  beforeAll(async () => {
    ws = new CaWorkspace({ ...(listen && { listen }), extraConfig: "issuance: { defaultTTL: 10m, maxTTL: 168h }\n" });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  }, 60_000);
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("renewers across the rotation: zero failed renewals; the fleet moves to the new intermediate", async () => {
    const oldIntermediate = ca.intermediatePem;
    const renewers = await Promise.all(["svc-a", "svc-b", "svc-c"].map((n) => ca.issue(n)));
    const failures: string[] = [];
    const chains: string[][] = renewers.map(() => []);
    let stop = false;
    const loops = renewers.map(async (first, n) => {
      let current = first;
      let round = 0;
      while (!stop) {
        const r = await ca.renew(current.identity);
        if (r.status !== 201) failures.push(`${current.serial}: ${r.status} ${r.raw}`);
        else {
          current = ca.keep(`${first.serial}-${round++}`, r.body, first.keyPath);
          chains[n]!.push(current.chain);
          if (!issuedBy(current.certificate, current.chain)) failures.push(`${current.serial}: chain does not match the certificate`);
        }
        await new Promise((res) => setTimeout(res, 300));
      }
      return current;
    });
    await new Promise((res) => setTimeout(res, 1_500));
    const r = await ws.cli(["rotate", "intermediate"]);
    expect(r.code, r.stderr).toBe(0);
    const out = rotateOutput(r.stdout);
    const { seen: newIntermediate } = await eventually(5_000, "/intermediate.crt serves the new intermediate", () => intermediateOf(d.publicUrl), (p) => p !== oldIntermediate);
    expect(keyIdOf(newIntermediate)).toBe(out.current);
    // Default --migrate-within: 24 h.
    expect(out.windowEnd.getTime()).toBeGreaterThan(Date.now() + 23 * 3_600_000);
    await eventually(5_000, "every renewer renewed from the new intermediate", async () => chains.map((c) => c.at(-1)), (last) => last.every((c) => c === newIntermediate));
    await new Promise((res) => setTimeout(res, 1_000));
    stop = true;
    const finals = await Promise.all(loops);
    expect(failures).toEqual([]);
    for (const c of chains) {
      expect(c[0]).toBe(oldIntermediate);
      // Once moved, never back.
      expect(c.slice(c.indexOf(newIntermediate)).every((x) => x === newIntermediate)).toBe(true);
    }
    await ca.init();
    for (const f of finals) expect(verifies(ca, f)).toBe(`${f.certPath}: OK`);
    // A certificate the old intermediate issued still gets its OCSP answer (through the workers when there are some).
    const oldPath = join(ws.dir, "old-intermediate.pem");
    writeFileSync(oldPath, oldIntermediate);
    const first = ca.keep("svc-a-first", { serial: renewers[0]!.serial, certificate: renewers[0]!.certificate, chain: renewers[0]!.chain, notBefore: renewers[0]!.notBefore, notAfter: renewers[0]!.notAfter }, renewers[0]!.keyPath);
    expect(await ocspStatus(ca, d.publicUrl, oldPath, first)).toMatch(/: good/);
  }, 60_000);
});

/**
 * The old intermediate's lifetime after a rotation, with the clock frozen (in-process daemon,
 * ticks by hand): it keeps its CRL and OCSP while a certificate of its lives, and is dropped
 * from publishing (its key no longer loaded) once the last one has expired.
 */
describe("an old intermediate after its last certificate expires (in-process, manual clock)", () => {
  const ws = new CaWorkspace({ extraConfig: "issuance: { defaultTTL: 1h, maxTTL: 168h }\n" });
  afterAll(() => ws.remove());

  it("publishes its CRL until its last certificate expires, then drops it; the current one stays", async () => {
    const clock = new ManualClock();
    const { daemon, logs } = await startInProcess(ws, clock);
    try {
      const ca = await new CaClient(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`]).init();
      const oldKeyId = keyIdOf(ca.intermediatePem);
      await ca.issue("short-lived");
      const { config } = loadConfig(ws.configPath, {});
      const r = await rotateIntermediate(daemon.dataDir as OpenedDataDir, config, clock, { migrateWithinMs: 3_600_000 });
      expect(r.previousKeyId).toBe(oldKeyId);
      await daemon.tick();
      expect(await intermediateOf(daemon.publicUrl)).not.toBe(ca.intermediatePem);
      const crlStatus = async (k: string) => (await fetch(`${daemon.publicUrl}/crl/${k}`)).status;
      expect(await crlStatus(oldKeyId)).toBe(200);
      expect(await crlStatus(r.current.keyId)).toBe(200);

      // 2 h later the leaf has expired, but the old intermediate's serving certificate (a day) has not.
      clock.advance(2 * 3_600_000);
      await daemon.tick();
      expect(await crlStatus(oldKeyId)).toBe(200);

      // Past the serving certificate too: nothing of the old intermediate lives any more.
      clock.advance(23 * 3_600_000);
      await daemon.tick();
      expect(await crlStatus(oldKeyId)).toBe(404);
      expect(await crlStatus(r.current.keyId)).toBe(200);
      expect(logs.join("\n")).toMatch(new RegExp(`msg="intermediates changed" intermediate=${r.current.keyId} answering="\\[\\\\"${r.current.keyId}\\\\"\\]"`));
      expect(keyIdOf(await intermediateOf(daemon.publicUrl))).toBe(r.current.keyId);
    } finally {
      await daemon.close();
    }
  }, 60_000);
});

/**
 * The drill with the real cert-agent (12-second certificates, so it renews every ~8 s over mTLS):
 * across a rotation it keeps renewing without one failed attempt, and moves to the new
 * intermediate on its next renewal.
 */
describe("rotation drill with the real cert-agent", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let agent: ChildProcess | undefined;
  let agentOut = "";

  beforeAll(async () => {
    ws = await agentWorkspace("issuance: { defaultTTL: 12s, maxTTL: 168h, minTTL: 5s }\n");
    d = await ws.start();
  }, 60_000);
  afterAll(async () => {
    if (agent && agent.exitCode === null) agent.kill("SIGKILL");
    await d?.stop();
    ws?.remove();
  });

  it("renews across the rotation with no failed attempt; its chain.pem becomes the new intermediate", async () => {
    const out = join(ws.dir, "out");
    const tokenFile = join(ws.dir, "svc.token");
    writeFileSync(tokenFile, `${await ws.token("svc", ["svc.internal"])}\n`);
    agent = spawn(process.execPath, [AGENT_BIN, "--ca", d.apiUrl, "--root-fingerprint", await rootFingerprint(d.publicUrl), "--token-file", tokenFile, "--out", out, "--san", "svc.internal"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    agent.stdout!.on("data", (b: Buffer) => (agentOut += b.toString()));
    agent.stderr!.on("data", (b: Buffer) => (agentOut += b.toString()));
    const chainPath = join(out, "..data", "chain.pem");
    await eventually(15_000, "first issuance", async () => existsSync(chainPath), (x) => x);
    const oldIntermediate = await intermediateOf(d.publicUrl);
    expect(readFileSync(chainPath, "utf8")).toBe(oldIntermediate);

    const r = await ws.cli(["rotate", "intermediate", "--migrate-within", "1h"]);
    expect(r.code, r.stderr).toBe(0);
    const { seen: newIntermediate } = await eventually(5_000, "the new intermediate is served", () => intermediateOf(d.publicUrl), (p) => p !== oldIntermediate);
    await eventually(
      20_000,
      "the agent renewed into the new intermediate",
      async () => readFileSync(chainPath, "utf8"),
      (c) => c === newIntermediate,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\nagent output:\n${agentOut}`);
    });
    expect(agentOut.match(/msg="renewed"/g)?.length ?? 0).toBeGreaterThanOrEqual(1);
    expect(agentOut).not.toMatch(/msg="(attempt failed|re-attesting)"/);
    expect(agentOut.match(/msg="enrolling"/g)).toHaveLength(1); // the first issuance only: every later one was a renewal
  }, 60_000);
});
