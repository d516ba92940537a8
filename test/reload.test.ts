/**
 * `fleetca/reload` (src/reload/) with the real agent code and the real daemon: a node https
 * server follows the agent's directory while clients hammer it on keep-alive and on new
 * connections, and the agent renews 20 times (each renewal a new key, a new serial, a new
 * publication): not one request may fail, and new connections must see every new serial.
 * Also: mTLS clients through `agent()`, OCSP stapling, and a bad set that must be ignored.
 */
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Agent as HttpsAgent, createServer, request, type Server } from "node:https";
import { connect, createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { connect as http2Connect, createSecureServer } from "node:http2";
import express from "express";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent, type CurrentSet } from "../src/agent/agent.js";
import { publishSet } from "../src/agent/publisher.js";
import { systemClock } from "../src/core/clock.js";
import { CertificateWatcher, type RejectedEvent, type ReloadedEvent } from "../src/reload/index.js";
import { agentWorkspace, rootFingerprint } from "./harness/cert-agent.js";
import { eventually } from "./harness/eventually.js";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";

const SAN = "svc.internal";

describe("hot reload from cert-agent's directory (real agent code, real daemon)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let agent: Agent;
  let out: string;
  let current: CurrentSet;

  beforeAll(async () => {
    ws = await agentWorkspace("issuance: { defaultTTL: 1h, maxTTL: 168h }\n");
    d = await ws.start();
    out = join(ws.dir, "out");
    const tokenFile = join(ws.dir, "svc.token");
    writeFileSync(tokenFile, `${await ws.token("svc", [SAN])}\n`);
    agent = new Agent({
      caUrl: d.apiUrl,
      fingerprint: await rootFingerprint(d.publicUrl),
      tokenFile,
      outDir: out,
      sans: [SAN],
      clock: systemClock,
      sleep: async () => {},
      random: Math.random,
      log: () => {},
    });
    current = await agent.issueAndPublish(null);
  }, 60_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("serves through 20 renewals with zero failed requests; new connections get each new serial, mTLS clients present it", async () => {
    const watcher = CertificateWatcher.open(out, { pollMs: 1_000, secureContext: { minVersion: "TLSv1.2" } });
    const reloaded: ReloadedEvent[] = [];
    const rejected: RejectedEvent[] = [];
    watcher.on("reloaded", (e: ReloadedEvent) => reloaded.push(e));
    watcher.on("rejected", (e: RejectedEvent) => rejected.push(e));
    expect(watcher.current.serial).toBe(current.serial);

    // The server asks for a client certificate and checks it against the agent's bundle, so the
    // mTLS client below proves which certificate it presented.
    const server: Server = createServer({ ...watcher.serverOptions(), requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const peer = (req.socket as import("node:tls").TLSSocket).getPeerCertificate();
      res.end(peer && peer.serialNumber ? peer.serialNumber.toLowerCase() : "-");
    });
    watcher.attach(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const ca = watcher.current.caPem;

    let ok = 0;
    const failures: string[] = [];
    const seenByNewConnections = new Set<string>();
    const presentedByMtls = new Set<string>();
    let stop = false;
    const get = (agentOpt: HttpsAgent | false, onResponse?: (serverSerial: string, body: string) => void) =>
      new Promise<void>((resolve) => {
        const req = request({ host: "127.0.0.1", port, path: "/", servername: SAN, ca, agent: agentOpt }, (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => {
            if (res.statusCode === 200) ok++;
            else failures.push(`status ${res.statusCode}`);
            const cert = (res.socket as import("node:tls").TLSSocket | null)?.getPeerCertificate?.();
            onResponse?.(cert?.serialNumber?.toLowerCase() ?? "", body);
            resolve();
          });
        });
        req.on("error", (e) => {
          failures.push(e.message);
          resolve();
        });
        req.end();
      });
    const loops: Promise<void>[] = [];
    // Keep-alive clients: their connections were opened on an older certificate and stay on it.
    for (let i = 0; i < 3; i++) {
      const ka = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
      loops.push((async () => { while (!stop) await get(ka); ka.destroy(); })());
    }
    // A new connection per request: each must see the certificate current when it connected.
    for (let i = 0; i < 3; i++) loops.push((async () => { while (!stop) await get(false, (s) => seenByNewConnections.add(s)); })());
    // mTLS clients through the watcher's agent: new connections present the current set.
    const mtls = watcher.agent({ maxSockets: 1, keepAlive: false });
    loops.push((async () => { while (!stop) await get(mtls, (_s, body) => presentedByMtls.add(body)); })());

    const serials = [current.serial];
    try {
      for (let n = 0; n < 20; n++) {
        current = await agent.issueAndPublish(current);
        serials.push(current.serial);
        await eventually(10_000, `reload ${n + 1}`, async () => watcher.current.serial, (s) => s === current.serial);
        await eventually(10_000, `a new connection on serial ${current.serial}`, async () => seenByNewConnections.has(current.serial), (x) => x);
        await eventually(10_000, `an mTLS client presenting ${current.serial}`, async () => presentedByMtls.has(current.serial), (x) => x);
      }
    } finally {
      stop = true;
      await Promise.all(loops);
      mtls.destroy();
      await watcher.close();
      await new Promise((r) => server.close(r));
    }
    expect(new Set(serials).size).toBe(21);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(200);
    for (const s of serials) expect(seenByNewConnections.has(s), s).toBe(true);
    expect(reloaded.map((e) => e.serial)).toEqual(serials.slice(1));
    expect(rejected).toEqual([]);
  }, 180_000);

  it("swaps the certificate of a plain tls server, an http2 secure server and express on https alike", async () => {
    const watcher = CertificateWatcher.open(out, { pollMs: 500 });
    const app = express();
    app.get("/", (_q, r) => {
      r.send("express");
    });
    const servers: TlsServer[] = [
      createTlsServer(watcher.serverOptions(), (sock) => sock.end("tls\n")),
      createSecureServer(watcher.serverOptions(), (_q, r) => r.end("h2")),
      createServer(watcher.serverOptions(), app),
    ];
    const ports: number[] = [];
    for (const srv of servers) {
      watcher.attach(srv);
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
      ports.push((srv.address() as { port: number }).port);
    }
    // A handshake on a new connection: the serial each server presents now (ALPN h2 for http2).
    const serialAt = (port: number, alpn?: string) =>
      new Promise<string>((resolve, reject) => {
        const c = connect({ host: "127.0.0.1", port, servername: SAN, ca: watcher.current.caPem, ...(alpn && { ALPNProtocols: [alpn] }) });
        c.on("secureConnect", () => {
          const serial = c.getPeerCertificate().serialNumber.toLowerCase();
          c.destroy();
          resolve(serial);
        });
        c.on("error", reject);
      });
    const all = () => Promise.all([serialAt(ports[0]!), serialAt(ports[1]!, "h2"), serialAt(ports[2]!)]);
    try {
      const before = watcher.current.serial;
      expect(await all()).toEqual([before, before, before]);
      current = await agent.issueAndPublish(current);
      expect(current.serial).not.toBe(before);
      await eventually(5_000, "every server presents the new serial", all, (s) => s.every((x) => x === current.serial));
      // And each still serves its protocol on the new certificate.
      const body = await new Promise<string>((resolve, reject) => {
        request({ host: "127.0.0.1", port: ports[2], path: "/", servername: SAN, ca: watcher.current.caPem, agent: false }, (res) => {
          let b = "";
          res.on("data", (d) => (b += d));
          res.on("end", () => resolve(b));
        })
          .on("error", reject)
          .end();
      });
      expect(body).toBe("express");
      const h2 = http2Connect(`https://127.0.0.1:${ports[1]}`, { servername: SAN, ca: watcher.current.caPem });
      const h2body = await new Promise<string>((resolve, reject) => {
        const rq = h2.request({ ":path": "/" });
        let b = "";
        rq.on("data", (d: Buffer) => (b += d));
        rq.on("end", () => resolve(b));
        rq.on("error", reject);
        rq.end();
      });
      h2.close();
      expect(h2body).toBe("h2");
    } finally {
      await watcher.close();
      for (const srv of servers) await new Promise((r) => srv.close(r));
    }
  }, 60_000);

  it("staples the set's OCSP answer, and keeps the last good set when a bad one is published", async () => {
    const watcher = CertificateWatcher.open(out, { pollMs: 500 });
    const rejected: RejectedEvent[] = [];
    watcher.on("rejected", (e: RejectedEvent) => rejected.push(e));
    const good = watcher.current;
    expect(good.ocsp, "the agent published an OCSP answer with the set").not.toBeNull();
    const server = createServer(watcher.serverOptions(), (_q, r) => r.end("ok"));
    watcher.attach(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const handshake = () =>
      new Promise<{ serial: string; staple: Buffer | null }>((resolve, reject) => {
        let staple: Buffer | null = null;
        // requestOCSP is a documented tls.connect option missing from @types/node.
        const s = connect({ host: "127.0.0.1", port, servername: SAN, ca: good.caPem, requestOCSP: true } as import("node:tls").ConnectionOptions);
        s.on("OCSPResponse", (r: Buffer) => (staple = r));
        s.on("secureConnect", () => {
          const serial = s.getPeerCertificate().serialNumber.toLowerCase();
          s.end();
          resolve({ serial, staple });
        });
        s.on("error", reject);
      });
    try {
      const first = await handshake();
      expect(first.serial).toBe(good.serial);
      expect(first.staple && Buffer.from(first.staple).equals(good.ocsp!.der)).toBe(true);

      // A set whose key is not the certificate's: published atomically like any other, refused.
      const otherKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
      publishSet(out, [
        { name: "key.pem", data: otherKey, mode: 0o600 },
        { name: "cert.pem", data: current.certPem, mode: 0o644 },
        { name: "chain.pem", data: current.certPem + current.intermediatesPem, mode: 0o644 },
        { name: "ca.pem", data: good.caPem, mode: 0o644 },
      ], new Date());
      await eventually(5_000, "the bad set is rejected", async () => rejected.length, (n) => n >= 1);
      expect(rejected[0]!.reason).toMatch(/key\.pem does not match cert\.pem/);
      expect(watcher.current.serial).toBe(good.serial);
      const after = await handshake();
      expect(after.serial).toBe(good.serial);
      expect(new X509Certificate(watcher.serverOptions().cert as string).serialNumber.toLowerCase()).toBe(good.serial);
      await new Promise((r) => setTimeout(r, 1_200)); // two polls: a rejected version is reported once
      expect(rejected).toHaveLength(1);
    } finally {
      await watcher.close();
      await new Promise((r) => server.close(r));
    }
  }, 60_000);
});
