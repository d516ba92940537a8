import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type Socket } from "node:net";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { globalAgent, request } from "node:https";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { opensslAsync } from "./harness/openssl.js";
import { openFileLimitProblem } from "../src/api/connection-guard.js";

const MAX = 40;
const PER_CLIENT = 25;
const HANDSHAKE_S = 2;

interface FloodSocket {
  socket: Socket;
  openedAt: number;
  closedAt: number | null;
}

/**
 * `n` connections from `localAddress` (another loopback address, so the test's own client keeps
 * its own per-address budget) that never complete anything: idle, or a TLS record header and no
 * more (a half-open handshake). Resolves once each is connected or already closed.
 */
function flood(port: number, localAddress: string, n: number, kind: "idle" | "half-open-tls"): Promise<FloodSocket[]> {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<FloodSocket>((resolve) => {
          const f: FloodSocket = { socket: connect({ host: "127.0.0.1", port, localAddress }), openedAt: Date.now(), closedAt: null };
          f.socket.on("error", () => {});
          f.socket.on("close", () => {
            f.closedAt = Date.now();
            resolve(f);
          });
          f.socket.on("connect", () => {
            // A handshake record of 512 bytes announced, 5 sent.
            if (kind === "half-open-tls") f.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
            setTimeout(() => resolve(f), 50);
          });
        }),
    ),
  );
}

const until = async (what: string, ms: number, ok: () => boolean) => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** A TLS connection to the API from 127.0.0.1: "ok" when the handshake completes, else the error code. */
function apiHandshake(port: number, ca: string): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/roots.pem", ca, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve("ok"));
    });
    req.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.setTimeout(5_000, () => req.destroy(new Error("timeout")));
    req.end();
  });
}

describe(`listeners under a connection flood (maxConnections ${MAX}, maxConnectionsPerClient ${PER_CLIENT}, handshakeTimeout ${HANDSHAKE_S}s)`, () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  let svc: Issued;
  let apiPort: number;
  let publicPort: number;
  const ocspGood = async () => {
    const r = await opensslAsync(["ocsp", "-timeout", "5", "-issuer", ca.intermediatePath, "-cert", svc.certPath, "-url", `${d.publicUrl}/ocsp`, "-CAfile", ca.rootsPath]);
    return r.out.includes("Response verify OK") && r.out.includes(": good");
  };
  const fds = () => readdirSync(`/proc/${d.child.pid}/fd`).length;

  beforeAll(async () => {
    ws = new CaWorkspace({ listen: `maxConnections: { api: ${MAX}, public: ${MAX} }, maxConnectionsPerClient: ${PER_CLIENT}, handshakeTimeout: ${HANDSHAKE_S}s` });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    svc = await ca.issue("svc");
    apiPort = Number(new URL(d.apiUrl).port);
    publicPort = Number(new URL(d.publicUrl).port);
  });

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("closes a client's connections over its per-address cap at once, keeps serving other clients, and says so in the log", async () => {
    const fdsBefore = fds();
    const [onApi, onPublic] = await Promise.all([flood(apiPort, "127.0.0.2", PER_CLIENT + 5, "half-open-tls"), flood(publicPort, "127.0.0.2", PER_CLIENT + 5, "idle")]);
    // Refused ones close as soon as the daemon accepts them (its accept loop may lag the kernel's).
    await new Promise((r) => setTimeout(r, 700));
    for (const sockets of [onApi, onPublic]) {
      const refusedAtOnce = sockets.filter((f) => f.closedAt !== null && f.closedAt - f.openedAt < 1_000);
      expect(refusedAtOnce).toHaveLength(5);
    }
    // The test's own client (127.0.0.1) meanwhile: a certificate over the API, an OCSP answer.
    expect(await apiHandshake(apiPort, ca.roots)).toBe("ok");
    expect(await ocspGood()).toBe(true);
    expect(fds()).toBeLessThan(fdsBefore + 2 * PER_CLIENT + 20);
    expect(d.output).toMatch(/msg="connection refused: listener at its connection cap" listener=listen.api cap="listen.maxConnectionsPerClient \(25\)" client=(::ffff:)?127.0.0.2/);
    expect(d.output).toMatch(/listener=listen.public cap="listen.maxConnectionsPerClient \(25\)"/);
    // Nothing completed a handshake or sent a request head: all closed by the timeout.
    await until("the flood closed", (HANDSHAKE_S + 3) * 1000, () => [...onApi, ...onPublic].every((f) => f.closedAt !== null));
    const held = [...onApi, ...onPublic].map((f) => f.closedAt! - f.openedAt);
    expect(Math.max(...held)).toBeLessThan((HANDSHAKE_S + 2) * 1000);
  });

  it("a listener at its total cap refuses new connections while the other keeps answering, and serves again once the flood is closed", async () => {
    // This test's own keep-alive connections to the API (the global agent's) would count too.
    globalAgent.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const half = MAX / 2;
    const sockets = (await Promise.all([flood(apiPort, "127.0.0.3", half, "idle"), flood(apiPort, "127.0.0.4", half, "half-open-tls")])).flat();
    await new Promise((r) => setTimeout(r, 300));
    expect(sockets.filter((f) => f.closedAt !== null).map((f) => [f.socket.localAddress, f.closedAt! - f.openedAt])).toEqual([]);
    // The API is full: the test's client is refused before any TLS; OCSP and CRLs are another listener.
    expect(await apiHandshake(apiPort, ca.roots)).not.toBe("ok");
    expect(await ocspGood()).toBe(true);
    expect((await fetch(`${d.publicUrl}/crl`)).status).toBe(200);
    expect(d.output).toMatch(/listener=listen.api cap="listen.maxConnections.api \(40\)"/);
    await until("the flood closed", (HANDSHAKE_S + 3) * 1000, () => sockets.every((f) => f.closedAt !== null));
    expect(await apiHandshake(apiPort, ca.roots)).toBe("ok");
    await ca.issue("after-flood");
  });
});

describe("openFileLimitProblem (the start-up check of listen.maxConnections against ulimit -n)", () => {
  const limits = (soft: string) => {
    const dir = mkdtempSync(join(tmpdir(), "fleetca-limits-"));
    const f = join(dir, "limits");
    writeFileSync(f, `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                20000                files\n`);
    return f;
  };
  it("names the caps and the limit when the caps can use up the descriptors, and stays quiet otherwise", () => {
    expect(openFileLimitProblem([1024, 4096], limits("20000"))).toBeNull();
    expect(openFileLimitProblem([1024, 4096], limits("unlimited"))).toBeNull();
    expect(openFileLimitProblem([1024, 4096], "/nonexistent/limits")).toBeNull();
    expect(openFileLimitProblem([1024, 4096], limits("1024"))).toBe(
      "listen.maxConnections (1024 + 4096) needs ~5376 file descriptors, over this process's open-file limit 1024: lower it, or raise the limit (ulimit -n, LimitNOFILE=)",
    );
  });
});
