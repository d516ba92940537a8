/**
 * nginx serving what a real cert-agent publishes, under load, through renewals (GitHub issue 13).
 *
 * Real processes throughout: `fleetca serve` issuing 9-second certificates, `cert-agent`
 * (dist/cli/cert-agent.js) renewing them at ~2/3 of their life (~6 s) and running
 * `nginx -s reload` after each publication, and Debian's nginx (master + worker, so a reload is
 * nginx's real graceful one) with
 *
 *     ssl_certificate     <out>/fullchain.pem;
 *     ssl_certificate_key <out>/key.pem;
 *     ssl_stapling on; ssl_stapling_file <out>/ocsp.der;
 *
 * Clients run the whole time: keep-alive connections (which nginx's graceful reload leaves on the
 * old worker and the old certificate: expected), a new connection per request (node https), and
 * a node tls client that asks for the OCSP staple on each new connection. Asserted: not one
 * request fails; every serial the agent publishes is seen by new connections shortly after its
 * publication; every staple covers the certificate it was stapled to.
 *
 * The node https server goes through 20 renewals in test/reload.test.ts; nginx goes through 5
 * here, which keeps this file near 40 s of wall time (the agent cannot renew faster than 2/3 of
 * the certificates' life, and shorter certificates than 9 s leave too little of the last third
 * for a loaded CI machine).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Agent as HttpsAgent, request } from "node:https";
import { connect, type ConnectionOptions, type PeerCertificate, type TLSSocket } from "node:tls";
import { join } from "node:path";
import { nginxConfig } from "./harness/nginx.js";
import { checkOcspResponse } from "../src/agent/ocsp-fetch.js";
import { AGENT_BIN, agentWorkspace, freePort, rootFingerprint } from "./harness/cert-agent.js";
import { eventually } from "./harness/eventually.js";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";

/** Debian's nginx; `.ci/run` installs it when missing. */
const NGINX = "/usr/sbin/nginx";
const SAN = "localhost";
/** Renewals to watch (see the header for why 5 and not 20). */
const RENEWALS = 5;
/** A new connection must see a newly published serial within this (publication → reload → handshake). */
const NEW_SERIAL_WITHIN_MS = 3_000;
const KEEP_ALIVE_CLIENTS = 3;

interface Publication {
  serial: string;
  at: number;
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

describe.skipIf(!existsSync(NGINX))("nginx reloads what cert-agent publishes (real nginx, real cert-agent, real daemon, 9 s certificates)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let agent: ChildProcess | undefined;
  let nginx: ChildProcess | undefined;
  let agentOut = "";
  let nginxOut = "";

  beforeAll(async () => {
    ws = await agentWorkspace("issuance: { defaultTTL: 9s, maxTTL: 168h, minTTL: 5s }\n");
    d = await ws.start();
  }, 60_000);

  afterAll(async () => {
    // Only the processes this file started, by their own handles.
    if (agent && agent.exitCode === null && agent.signalCode === null) {
      agent.kill("SIGKILL");
      await exited(agent);
    }
    if (nginx && nginx.exitCode === null && nginx.signalCode === null) {
      nginx.kill("SIGTERM"); // the master: it stops its workers before it exits
      await exited(nginx);
    }
    await d?.stop();
    ws?.remove();
  });

  it(`serves through ${RENEWALS} renewals with zero failed requests; new connections see every new serial, stapled`, async () => {
    const out = join(ws.dir, "out");
    const dir = join(ws.dir, "nginx");
    mkdirSync(dir);
    const conf = join(dir, "nginx.conf");
    const errorLog = join(dir, "error.log");
    const pidFile = join(dir, "nginx.pid");
    const port = await freePort();
    // master_process on (the default) so that `-s reload` is the graceful reload production nginx
    // does: the master re-reads the files, starts new workers, old workers finish their connections.
    writeFileSync(
      conf,
      nginxConfig({ dir, processModel: "worker_processes 1;", workerConnections: 256, servers: `  server {
    listen 127.0.0.1:${port} ssl;
    server_name ${SAN};
    ssl_certificate ${out}/fullchain.pem;
    ssl_certificate_key ${out}/key.pem;
    ssl_stapling on;
    ssl_stapling_file ${out}/ocsp.der;
    location / { return 200 "ok\\n"; }
  }
` }),
    );
    const reloadCmd = `${NGINX} -s reload -c ${conf} -e ${errorLog}`;

    const tokenFile = join(ws.dir, "web.token");
    writeFileSync(tokenFile, `${await ws.token("web", [SAN])}\n`);
    const publications: Publication[] = [];
    agent = spawn(
      process.execPath,
      [AGENT_BIN, "--ca", d.apiUrl, "--root-fingerprint", await rootFingerprint(d.publicUrl), "--token-file", tokenFile, "--out", out, "--san", SAN, "--reload-cmd", reloadCmd],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let partial = "";
    agent.stdout!.on("data", (b: Buffer) => {
      agentOut += b.toString();
      partial += b.toString();
      const lines = partial.split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        const m = /msg="published" .*serial=([0-9a-f]+)/.exec(line);
        if (m) publications.push({ serial: m[1]!, at: Date.now() });
      }
    });
    agent.stderr!.on("data", (b: Buffer) => (agentOut += b.toString()));
    const withAgentOutput = (e: Error) => {
      throw new Error(`${e.message}\nagent output:\n${agentOut}\nnginx:\n${nginxOut}${existsSync(errorLog) ? readFileSync(errorLog, "utf8") : ""}`);
    };

    // The first set: nginx starts on it. (The agent's first reload, before nginx runs, fails: logged, not fatal.)
    await eventually(20_000, "the first publication", async () => publications.length, (n) => n >= 1).catch(withAgentOutput);
    expect(existsSync(join(out, "ocsp.der")), "the agent published an OCSP answer to staple").toBe(true);
    nginx = spawn(NGINX, ["-c", conf, "-e", errorLog], { stdio: ["ignore", "pipe", "pipe"] });
    nginx.stdout!.on("data", (b: Buffer) => (nginxOut += b.toString()));
    nginx.stderr!.on("data", (b: Buffer) => (nginxOut += b.toString()));
    const ca = readFileSync(join(out, "ca.pem"), "utf8");

    // ---- clients -------------------------------------------------------------------------------
    let ok = 0;
    let keepAliveOk = 0;
    let keepAliveRetries = 0;
    const keepAliveSerials = new Set<string>();
    const failures: string[] = [];
    /** serial → first time a new connection saw it. */
    const firstSeen = new Map<string, number>();
    const stapleProblems: string[] = [];
    let stapled = 0;
    let stop = false;

    /**
     * One GET. A keep-alive client retries once, on a new connection, a request that was sent on a
     * reused connection the server closed before answering (ECONNRESET before any response): the
     * race every HTTP/1.1 client has with a server closing an idle keep-alive connection, which
     * nginx's old workers do at a graceful reload; RFC 9112 §9.3.1 lets a client retry an
     * idempotent request then, and node documents exactly this retry (`request.reusedSocket`).
     * Those retries are counted and bounded below; everything else is a failure.
     */
    const get = (agentOpt: HttpsAgent | false, onServed?: (serial: string) => void, retry = true): Promise<void> =>
      new Promise<void>((resolve) => {
        const req = request({ host: "127.0.0.1", port, path: "/", servername: SAN, ca, agent: agentOpt }, (res) => {
          // Read now: a keep-alive socket is detached from the response once it goes back to the pool.
          const peer = (res.socket as TLSSocket).getPeerCertificate();
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => {
            if (res.statusCode === 200 && body === "ok\n") {
              ok++;
              if (agentOpt) keepAliveOk++;
            } else failures.push(`status ${res.statusCode} ${JSON.stringify(body)}`);
            if (peer?.serialNumber) onServed?.(peer.serialNumber.toLowerCase());
            resolve();
          });
          res.on("error", (e) => {
            failures.push(`response: ${e.message}`);
            resolve();
          });
        });
        req.on("error", (e: NodeJS.ErrnoException) => {
          if (agentOpt && retry && req.reusedSocket && e.code === "ECONNRESET") {
            keepAliveRetries++;
            resolve(get(agentOpt, onServed, false));
            return;
          }
          failures.push(`${agentOpt ? "keep-alive" : "new connection"}${req.reusedSocket ? " (reused socket)" : ""}: ${e.message}`);
          resolve();
        });
        req.end();
      });

    /** A node tls client: a new connection asking for the OCSP staple, then one HTTP/1.1 request on it. */
    const stapledGet = () =>
      new Promise<void>((resolve) => {
        let staple: Buffer | null = null;
        let response = "";
        let settled = false;
        const done = (problem?: string) => {
          if (settled) return;
          settled = true;
          if (problem) failures.push(`tls client: ${problem}`);
          s.destroy();
          resolve();
        };
        // requestOCSP is a documented tls.connect option missing from @types/node.
        const s = connect({ host: "127.0.0.1", port, servername: SAN, ca, requestOCSP: true } as ConnectionOptions);
        s.on("OCSPResponse", (r: Buffer) => (staple = r));
        s.on("secureConnect", () => {
          const peer = s.getPeerCertificate(true) as PeerCertificate & { issuerCertificate?: PeerCertificate };
          const serial = peer.serialNumber.toLowerCase();
          if (!firstSeen.has(serial)) firstSeen.set(serial, Date.now());
          if (!staple) stapleProblems.push(`no staple with ${serial}`);
          else {
            try {
              const r = checkOcspResponse(staple, peer.raw, peer.issuerCertificate!.raw);
              if (r.status === "good") stapled++;
              else stapleProblems.push(`staple for ${serial}: ${r.status}`);
            } catch (e) {
              stapleProblems.push(`staple with ${serial}: ${(e as Error).message}`);
            }
          }
          s.write(`GET / HTTP/1.1\r\nHost: ${SAN}\r\nConnection: close\r\n\r\n`);
        });
        s.on("data", (c: Buffer) => (response += c.toString()));
        s.on("end", () => {
          if (/^HTTP\/1\.1 200 /.test(response) && response.endsWith("ok\n")) {
            ok++;
            done();
          } else done(`unexpected response ${JSON.stringify(response.slice(0, 80))}`);
        });
        s.on("error", (e) => done(e.message));
      });

    const sawSerial = (serial: string) => {
      if (!firstSeen.has(serial)) firstSeen.set(serial, Date.now());
    };
    await eventually(10_000, "nginx answers", async () => {
      const before = ok;
      await get(false, sawSerial);
      return ok > before;
    }, (x) => x).catch(withAgentOutput);
    failures.length = 0; // refused connections while nginx was starting are not what is measured

    const loops: Promise<void>[] = [];
    const keepAliveAgents: HttpsAgent[] = [];
    for (let i = 0; i < KEEP_ALIVE_CLIENTS; i++) {
      const ka = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
      keepAliveAgents.push(ka);
      loops.push((async () => { while (!stop) await get(ka, (serial) => keepAliveSerials.add(serial)); })());
    }
    for (let i = 0; i < 2; i++) loops.push((async () => { while (!stop) await get(false, sawSerial); })());
    loops.push((async () => { while (!stop) await stapledGet(); })());

    const started = Date.now();
    let published: Publication[];
    try {
      await eventually(
        (RENEWALS + 1) * 9_000,
        `${RENEWALS} renewals published`,
        async () => publications.length,
        (n) => n >= RENEWALS + 1,
      ).catch(withAgentOutput);
      published = publications.slice(0, RENEWALS + 1);
      const last = published[published.length - 1]!;
      await eventually(NEW_SERIAL_WITHIN_MS + 1_000, `a new connection on ${last.serial}`, async () => firstSeen.has(last.serial), (x) => x).catch(withAgentOutput);
    } finally {
      stop = true;
      await Promise.all(loops);
      for (const ka of keepAliveAgents) ka.destroy();
    }
    const elapsed = Date.now() - started;

    // ---- what was measured -----------------------------------------------------------------------
    const latencies = published.slice(1).map((p) => (firstSeen.get(p.serial) ?? Infinity) - p.at);
    console.log(
      `nginx reload: ${RENEWALS} renewals in ${elapsed} ms; ${ok} requests ok (${keepAliveOk} keep-alive, on ${keepAliveSerials.size} serials, ${keepAliveRetries} retried after the old worker closed the connection), ${failures.length} failed; ` +
        `${stapled} good staples; publication → first new connection on it: ${latencies.map((l) => `${l} ms`).join(", ")}`,
    );
    expect(failures, "failed requests").toEqual([]);
    expect(new Set(published.map((p) => p.serial)).size, "each publication a new serial").toBe(RENEWALS + 1);
    for (const [i, p] of published.entries()) {
      expect(firstSeen.has(p.serial), `serial ${p.serial} (publication ${i}) seen by a new connection`).toBe(true);
    }
    for (const [i, l] of latencies.entries()) {
      expect(l, `publication ${i + 1} → first new connection`).toBeLessThanOrEqual(NEW_SERIAL_WITHIN_MS);
    }
    // At most one closed-under-the-request per keep-alive connection per reload.
    expect(keepAliveRetries, "keep-alive retries").toBeLessThanOrEqual(KEEP_ALIVE_CLIENTS * (RENEWALS + 1));
    expect(keepAliveOk, "keep-alive clients kept being served").toBeGreaterThan(50 * RENEWALS);
    expect(ok).toBeGreaterThan(keepAliveOk);
    expect(stapleProblems, "every new connection got a staple covering its certificate").toEqual([]);
    expect(stapled).toBeGreaterThan(RENEWALS);

    // The agent ran the reload after every publication since nginx started, and nginx took each.
    const reloadsOk = agentOut.match(/msg="reload ok"/g)?.length ?? 0;
    expect(reloadsOk, agentOut).toBeGreaterThanOrEqual(RENEWALS);
    const log = readFileSync(errorLog, "utf8");
    expect(log, "nginx refused a configuration").not.toMatch(/\[emerg\]/);
    expect(log.match(/signal 1 \(SIGHUP\) received/g)?.length ?? 0, log).toBeGreaterThanOrEqual(RENEWALS);

    // A clean stop: SIGTERM, exit 0.
    const exit = exited(agent!);
    agent!.kill("SIGTERM");
    expect(await exit).toBe(0);
  }, 90_000);
});
