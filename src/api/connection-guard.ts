import { readFileSync } from "node:fs";
import type { Server } from "node:net";
import type { Socket } from "node:net";
import type { Logger } from "pino";

export interface ConnectionLimits {
  /** Open connections one listener holds at most (config listen.maxConnections.api / .public). */
  maxConnections: number;
  /** Open connections one client address holds at most on one listener (listen.maxConnectionsPerClient). */
  maxPerClient: number;
}

/** A refusal is logged at most this often per listener and cap, with the count since the last line. */
const REFUSAL_LOG_EVERY_MS = 10_000;

/**
 * Caps the connections a listener holds, in total and per client address, so a flood of idle or
 * half-open connections cannot use up the process's file descriptors (at the limit, every
 * listener of the process refuses everyone, and nothing says why). Over a cap, the new TCP
 * connection is closed at once, before any TLS or HTTP work; the first refusal and then one line
 * every 10 s per cap say which cap and how many were refused. Connections are counted from the raw
 * socket ("connection" comes before the TLS handshake on a tls.Server), so half-open TLS
 * handshakes count too.
 */
export function guardConnections(server: Server, listener: string, limits: ConnectionLimits, log: Logger): { open(): number } {
  let open = 0;
  const perClient = new Map<string, number>();
  // Per cap: the total cap being hit must not be hidden by a line about one client's.
  const refusals = new Map<string, { refused: number; lastLogAt: number }>();
  const refuse = (socket: Socket, cap: string, client: string) => {
    socket.destroy();
    const r = refusals.get(cap) ?? { refused: 0, lastLogAt: -Infinity };
    refusals.set(cap, r);
    r.refused++;
    const now = Date.now();
    if (now - r.lastLogAt >= REFUSAL_LOG_EVERY_MS) {
      r.lastLogAt = now;
      log.warn({ listener, cap, client, refused: r.refused, open }, "connection refused: listener at its connection cap");
      r.refused = 0;
    }
  };
  server.on("connection", (socket: Socket) => {
    const client = socket.remoteAddress ?? "unknown";
    if (open >= limits.maxConnections) return refuse(socket, `${listener.replace(/^listen\./, "listen.maxConnections.")} (${limits.maxConnections})`, client);
    const mine = perClient.get(client) ?? 0;
    if (mine >= limits.maxPerClient) return refuse(socket, `listen.maxConnectionsPerClient (${limits.maxPerClient})`, client);
    open++;
    perClient.set(client, mine + 1);
    socket.once("close", () => {
      open--;
      const left = (perClient.get(client) ?? 1) - 1;
      if (left > 0) perClient.set(client, left);
      else perClient.delete(client);
    });
  });
  return { open: () => open };
}

/** One listener's limits as configured (config listen.*). */
export function connectionLimitsOf(
  listen: { maxConnections: { api: number; public: number }; maxConnectionsPerClient: number; handshakeTimeout: number },
  listener: "api" | "public",
): ConnectionLimits & { handshakeTimeoutMs: number } {
  return { maxConnections: listen.maxConnections[listener], maxPerClient: listen.maxConnectionsPerClient, handshakeTimeoutMs: listen.handshakeTimeout };
}

/** File descriptors a process needs besides its connections: the database, logs, key files, node's own. */
const FD_HEADROOM = 256;

/**
 * Why the connection caps could still run the process out of file descriptors (the soft
 * RLIMIT_NOFILE, from /proc/self/limits on Linux), or null when they cannot or it is unknown.
 */
export function openFileLimitProblem(maxConnections: number[], limitsFile = "/proc/self/limits"): string | null {
  let soft: number;
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(limitsFile, "utf8"));
    if (!m || m[1] === "unlimited") return null;
    soft = Number(m[1]);
  } catch {
    return null;
  }
  const needed = maxConnections.reduce((a, b) => a + b, 0) + FD_HEADROOM;
  if (needed <= soft) return null;
  return `listen.maxConnections (${maxConnections.join(" + ")}) needs ~${needed} file descriptors, over this process's open-file limit ${soft}: lower it, or raise the limit (ulimit -n, LimitNOFILE=)`;
}
