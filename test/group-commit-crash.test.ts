import Database from "better-sqlite3";
import { writeFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { fetchRoots, signBody, type ApiResponse } from "./harness/http.js";
import { makeCsr, opensslAll } from "./harness/openssl.js";

/**
 * Issue 12, group commit, black-box: 200 concurrent `POST /v1/sign` against the real daemon, the
 * daemon SIGKILLed while they are in flight, then restarted on the same dataDir. Whatever the
 * batching does, "stored before handed out" and "one token, one use" must hold across the crash,
 * and every client whose answer was lost must be able to get a certificate by retrying.
 */
const N = 200;
/** The daemon is killed once this many certificates have been handed out. */
const KILL_AFTER = 50;
/**
 * These clients (each with an Idempotency-Key) hang up right after sending: the daemon commits
 * their certificates but cannot hand them out, the "committed, answer lost" case a crash also
 * makes (deterministically here, where the kill alone would only hit it by chance).
 */
const ABANDONING = new Set([30, 33, 36, 39, 42, 45, 48, 51]);

interface Attempt {
  i: number;
  token: string;
  idempotencyKey: string | undefined;
  csrPem: string;
  result: ApiResponse | Error | undefined;
}

function post(agent: Agent, url: string, a: Pick<Attempt, "token" | "idempotencyKey" | "csrPem">, abandon = false): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${a.token}`,
          ...(a.idempotencyKey !== undefined && { "idempotency-key": a.idempotencyKey }),
        },
      },
      (res) => {
        let raw = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (raw += d));
        res.on("end", () => {
          let body: unknown = null;
          try {
            body = JSON.parse(raw);
          } catch {
            body = null;
          }
          resolve({ status: res.statusCode ?? 0, body, raw });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    // Hang up once the request is surely in the server's socket buffer: 50 ms after the handshake
    // (a fresh socket per request: maxSockets is N), never before it, or nothing would arrive.
    if (abandon) req.on("socket", (socket) => socket.once("secureConnect", () => setTimeout(() => req.destroy(new Error("client hung up")), 50)));
    req.end(signBody(a.csrPem));
  });
}

describe("group commit survives SIGKILL in the middle of 200 concurrent issuances", () => {
  // Ports are 0 (new on each start): tokens name the CA by its configured apiUrl so they stay valid.
  const ws = new CaWorkspace({ extraConfig: "apiUrl: https://ca.test.internal:8443\n" });
  afterAll(() => ws.remove());

  it("hands out only stored certificates, spends no token without one, and lets every interrupted client finish", { timeout: 180_000 }, async () => {
    const d1 = await ws.start();
    const roots = await fetchRoots(d1.publicUrl);
    const csrs = [0, 1, 2, 3].map((k) => makeCsr(ws.dir, `crash-${k}`, { cn: `crash-${k}.internal` }).csrPem);
    const attempts: Attempt[] = [];
    for (let i = 0; i < N; i++) {
      attempts.push({
        i,
        token: await ws.token(`crash-${i % 4}`, [`crash-${i % 4}.internal`]),
        // Every third client sends an Idempotency-Key, as cert-agent-like clients do.
        idempotencyKey: i % 3 === 0 ? `crash-key-${i}` : undefined,
        csrPem: csrs[i % 4]!,
        result: undefined,
      });
    }

    const agent1 = new Agent({ keepAlive: true, maxSockets: N, ca: roots });
    let handedOut = 0;
    let killed = false;
    // Read as another process would (WAL: readers never block the daemon's writer).
    const watcher = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
    const abandonedTokens = attempts.filter((a) => ABANDONING.has(a.i)).map((a) => tokenIdOf(a.token));
    const abandonedCommitted = () =>
      (watcher.prepare(`SELECT COUNT(*) FROM used_tokens WHERE token_id IN (${abandonedTokens.map(() => "?").join(",")})`).pluck().get(...abandonedTokens) as number) ===
      abandonedTokens.length;
    const exited = new Promise<void>((resolve) => d1.child.once("exit", () => resolve()));
    await Promise.all(
      attempts.map(async (a) => {
        try {
          a.result = await post(agent1, `${d1.apiUrl}/v1/sign`, a, ABANDONING.has(a.i));
        } catch (e) {
          a.result = e as Error;
        }
        if (!(a.result instanceof Error) && a.result.status === 201) handedOut++;
        if (!killed && handedOut >= KILL_AFTER && abandonedCommitted()) {
          killed = true;
          d1.child.kill("SIGKILL");
        }
      }),
    );
    agent1.destroy();
    watcher.close();
    await exited;
    expect(killed).toBe(true);

    const received = attempts.filter((a) => !(a.result instanceof Error) && a.result!.status === 201);
    const interrupted = attempts.filter((a) => a.result instanceof Error);
    // Every attempt either got its certificate or lost its connection to the kill: no other answer.
    expect(attempts.filter((a) => !received.includes(a) && !interrupted.includes(a)).map((a) => (a.result as ApiResponse).raw)).toEqual([]);
    expect(received.length).toBeGreaterThanOrEqual(KILL_AFTER);
    expect(interrupted.length).toBeGreaterThan(0);

    const d2 = await ws.start();
    try {
      // 1. Every certificate a client received is in the inventory, byte for byte.
      const list = await ws.cli(["list", "--json"]);
      expect(list.code).toBe(0);
      const inventory = (JSON.parse(list.stdout) as Array<{ serial: string }>).map((r) => r.serial);
      expect(new Set(inventory).size).toBe(inventory.length);
      const db = new Database(join(ws.dataDir, "fleetca.db"), { readonly: true });
      const tokenRows = new Map<string, string>();
      try {
        for (const a of received) {
          const body = a.result as ApiResponse;
          expect(inventory).toContain(body.body.serial);
          const der = db.prepare("SELECT der FROM certificates WHERE serial = ?").pluck().get(body.body.serial) as Buffer;
          expect(der.toString("base64")).toBe(pemBody(body.body.certificate));
        }
        // 2. No serial twice among the answers.
        const servedSerials = received.map((a) => (a.result as ApiResponse).body.serial as string);
        expect(new Set(servedSerials).size).toBe(servedSerials.length);
        // 3. No token marked used without its certificate, and no idempotency key without both.
        expect(db.prepare("SELECT token_id FROM used_tokens WHERE token_id NOT IN (SELECT token_id FROM certificates WHERE token_id IS NOT NULL)").pluck().all()).toEqual([]);
        expect(db.prepare("SELECT key FROM idempotency_keys k WHERE NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = k.serial AND c.token_id = k.token_id)").pluck().all()).toEqual([]);
        for (const r of db.prepare("SELECT token_id, serial FROM certificates WHERE token_id IS NOT NULL").all() as Array<{ token_id: string; serial: string }>) {
          tokenRows.set(r.token_id, r.serial);
        }
      } finally {
        db.close();
      }
      // Each certificate row names a distinct token (one token, one certificate).
      expect(new Set(tokenRows.values()).size).toBe(tokenRows.size);

      // 4. Every interrupted client retries exactly as it would in the field.
      const d2roots = await fetchRoots(d2.publicUrl);
      const agent2 = new Agent({ keepAlive: true, maxSockets: 16, ca: d2roots });
      const counts = { uncommittedSameToken: 0, committedSameKey: 0, committedNoKeyNewToken: 0 };
      const retried: ApiResponse[] = [];
      try {
        await Promise.all(
          interrupted.map(async (a) => {
            const committedSerial = tokenRows.get(tokenIdOf(a.token));
            const again = await post(agent2, `${d2.apiUrl}/v1/sign`, a);
            if (committedSerial === undefined) {
              // Nothing was committed: the same token is still unused and gets a certificate.
              expect(again.status, again.raw).toBe(201);
              counts.uncommittedSameToken++;
              retried.push(again);
            } else if (a.idempotencyKey !== undefined) {
              // Committed, answer lost: the same Idempotency-Key returns the stored certificate.
              expect(again.status, again.raw).toBe(201);
              expect(again.body.serial).toBe(committedSerial);
              counts.committedSameKey++;
              retried.push(again);
            } else {
              // Committed without a key: the token is spent (replayed) and the certificate is in
              // the inventory, revocable; the client gets a new one with a new token.
              expect(again.status).toBe(401);
              expect(again.body).toMatchObject({ error: "unauthorized", message: "replayed" });
              const fresh = await post(agent2, `${d2.apiUrl}/v1/sign`, { ...a, token: await ws.token(`crash-${a.i % 4}`, [`crash-${a.i % 4}.internal`]) });
              expect(fresh.status, fresh.raw).toBe(201);
              counts.committedNoKeyNewToken++;
              retried.push(fresh);
            }
          }),
        );
      } finally {
        agent2.destroy();
      }
      expect(counts.uncommittedSameToken + counts.committedSameKey + counts.committedNoKeyNewToken).toBe(interrupted.length);
      // The kill came while requests were in flight (some had not committed yet), and the
      // clients that hung up had been committed without getting their answer.
      expect(counts.uncommittedSameToken).toBeGreaterThan(0);
      const abandoned = interrupted.filter((a) => ABANDONING.has(a.i)).length;
      expect(abandoned).toBeGreaterThan(0);
      expect(counts.committedSameKey).toBeGreaterThanOrEqual(abandoned);
      console.log(`group commit crash: ${received.length} received before the kill, ${interrupted.length} interrupted`, counts);

      // 5. Every certificate handed out, before the kill and on retry, verifies as a TLS peer would check it.
      const rootsPath = join(ws.dir, "crash-roots.pem");
      const chainPath = join(ws.dir, "crash-chain.pem");
      writeFileSync(rootsPath, roots);
      writeFileSync(chainPath, (received[0]!.result as ApiResponse).body.chain);
      const all = [...received.map((a) => a.result as ApiResponse), ...retried];
      const files = all.map((r, k) => {
        const p = join(ws.dir, `crash-leaf-${k}.pem`);
        writeFileSync(p, r.body.certificate);
        return p;
      });
      const v = opensslAll(["verify", "-x509_strict", "-CAfile", rootsPath, "-untrusted", chainPath, ...files]);
      expect(v.code, v.out).toBe(0);
      expect(v.out.trim().split("\n").filter((l) => / OK$/.test(l))).toHaveLength(files.length);

      // 6. The issuance log (issue 14) accounts for the crash: it verifies, every certificate
      // handed out has its intent and its "issued" entry (audit verify checks every stored one),
      // and a signature whose certificate the kill kept from being stored is an unfinished intent,
      // never an "issued" entry.
      const audit = await ws.cli(["audit", "verify", "--json"]);
      expect(audit.code, audit.stdout + audit.stderr).toBe(0);
      const report = JSON.parse(audit.stdout) as { ok: boolean; unfinishedIntents: string[] };
      expect(report.ok).toBe(true);
      const handedOut = new Set(all.map((r) => r.body.serial as string));
      expect(report.unfinishedIntents.filter((s) => handedOut.has(s))).toEqual([]);
      for (const serial of [...handedOut].slice(0, 10)) {
        const q = await ws.cli(["audit", "query", "--serial", serial, "--json"]);
        expect(q.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { kind: string }).kind)).toEqual(["intent", "issued"]);
      }
    } finally {
      await d2.stop();
    }
  });
});

/** The token id the store records for a bootstrap token: provisioner-scoped jti (ports.ts TokenUse). */
function tokenIdOf(token: string): string {
  return `bootstrap:${JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()).jti as string}`;
}

function pemBody(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
}
