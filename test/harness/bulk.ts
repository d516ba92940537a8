import { Agent, request } from "node:https";
import { createBootstrapToken } from "../../src/attestation/bootstrap.js";
import { openDataDir } from "../../src/cli/data-dir.js";
import { ManualClock } from "../../src/core/clock.js";
import type { CaWorkspace } from "./fleetca-process.js";
import type { ApiResponse, ClientIdentity } from "./http.js";
import { SqliteOperationsPorts } from "../../src/storage/sqlite/sqlite-operations-ports.js";

/**
 * Many requests to the real API quickly, as a fleet makes them: one keep-alive TLS agent with a
 * few connections, tokens minted in-process with the real library (no CLI process per token).
 */
export class BulkClient {
  readonly #agent: Agent;

  constructor(
    readonly apiUrl: string,
    roots: string,
    identity?: ClientIdentity,
    connections = 8,
  ) {
    this.#agent = new Agent({ keepAlive: true, maxSockets: connections, ca: roots, ...(identity && { key: identity.key, cert: identity.cert }) });
  }

  post(path: string, body: string, token?: string): Promise<ApiResponse> {
    return new Promise((resolve, reject) => {
      const req = request(
        `${this.apiUrl}${path}`,
        {
          method: "POST",
          agent: this.#agent,
          headers: { "content-type": "application/json", ...(token !== undefined && { authorization: `Bearer ${token}` }) },
        },
        (res) => {
          let raw = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (raw += d));
          res.on("end", () => {
            let parsed: unknown = null;
            try {
              parsed = JSON.parse(raw);
            } catch {
              parsed = null;
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, raw });
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** Runs `job(i)` for i in [0, n) with at most `parallel` in flight. */
export async function inParallel<T>(n: number, parallel: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, n) }, async () => {
      for (let i = next++; i < n; i = next++) out[i] = await job(i);
    }),
  );
  return out;
}

/** `n` one-time bootstrap tokens for `sans`, minted with the workspace's own bootstrap key. */
export async function mintTokens(ws: CaWorkspace, audience: string, n: number, sans: (i: number) => string[]): Promise<string[]> {
  const dd = openDataDir(ws.dataDir, undefined, { create: false });
  try {
    const clock = new ManualClock(new Date());
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const t = await createBootstrapToken(
        { name: "bootstrap", maxTokenTtlMs: 3600_000, leewayMs: 60_000 },
        dd.caKeys,
        new SqliteOperationsPorts(dd.store),
        { subject: `host-${i}`, sans: sans(i), ttlMs: 3000_000, audience },
        clock,
      );
      out.push(t.reveal());
    }
    return out;
  } finally {
    dd.store.close();
  }
}
