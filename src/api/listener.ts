import type { IncomingMessage, Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { Server as TlsServer } from "node:tls";
import { OperatorError } from "../core/errors.js";

/**
 * How often node's HTTP server looks for requests past requestTimeout (default 30 s): a
 * constructor option.
 */
export const CONNECTIONS_CHECK_MS = 1_000;

/**
 * Slow or idle clients cannot hold a listener's sockets for long: a connection must send its
 * first request head within `handshakeTimeoutMs` of connecting (config listen.handshakeTimeout;
 * on TLS, of completing the handshake, which has its own bound of the same length, the tls.Server
 * option), a whole request within 30 s, and an idle keep-alive connection is closed after 5 s.
 *
 * The first-request deadline is ours: on Node 20, `headersTimeout` closes neither a connection
 * that sends nothing nor one that sends part of a request head (tried: both stayed open), and a
 * socket inactivity timeout would let a client trickling a byte a second stay forever.
 */
export function hardenTimeouts(s: HttpServer | HttpsServer, handshakeTimeoutMs: number): void {
  s.headersTimeout = handshakeTimeoutMs;
  s.requestTimeout = 30_000;
  s.keepAliveTimeout = 5_000;
  s.maxHeadersCount = 100;
  const deadlines = new WeakMap<Socket, NodeJS.Timeout>();
  const start = (socket: Socket) => {
    const t = setTimeout(() => socket.destroy(), handshakeTimeoutMs);
    t.unref();
    deadlines.set(socket, t);
    socket.once("close", () => clearTimeout(t));
  };
  // A TLS server's "connection" is the raw socket; its requests come on the TLS socket.
  s.on(s instanceof TlsServer ? "secureConnection" : "connection", start);
  s.on("request", (req: IncomingMessage) => {
    const t = deadlines.get(req.socket);
    if (t) {
      clearTimeout(t);
      deadlines.delete(req.socket);
    }
  });
}

/** Binds a listener; a port in use or a bad address is the operator's mistake, named by its config key. */
/**
 * Binds a listener. `backlog` is the accept queue: node's default (511) dropped SYNs when 1,000
 * cert-agents connected at once (the renewal-storm bench: up to 3,237 queue overflows a storm,
 * clients retrying after 1, 3 and 7 s), so each listener queues up to its connection cap; Linux
 * bounds it by net.core.somaxconn (4096 by default since 5.4).
 */
export function listen(server: HttpServer | HttpsServer, host: string, port: number, key: string, backlog = 511): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) =>
      reject(new OperatorError(`cannot listen on ${host}:${port} (${key}): ${e.code ?? e.message}`));
    server.once("error", onError);
    server.listen({ port, host, backlog }, () => {
      server.off("error", onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Stops accepting connections and resolves once the server is closed. With `graceMs`, requests
 * already in flight get that long to finish (SIGTERM: a sign request that got its intent and
 * signature gets its certificate stored and answered, rather than cut off): idle keep-alive
 * connections are closed at once and as they become idle, and whatever is still open when the
 * grace ends is cut.
 */
export function closeServer(s: HttpServer | HttpsServer, graceMs = 0): Promise<void> {
  return new Promise((resolve) => {
    let idleSweep: NodeJS.Timeout | undefined;
    const cut = setTimeout(() => s.closeAllConnections(), graceMs);
    s.close(() => {
      clearTimeout(cut);
      if (idleSweep) clearInterval(idleSweep);
      resolve();
    });
    if (graceMs <= 0) {
      s.closeAllConnections();
      return;
    }
    s.closeIdleConnections();
    idleSweep = setInterval(() => s.closeIdleConnections(), 50);
  });
}

export function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(":");
  return [addr.slice(0, i).replace(/^\[|\]$/g, ""), Number(addr.slice(i + 1))];
}

export function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "";
}

/** The host to print in a URL: wildcard binds are reachable on loopback; IPv6 goes in brackets. */
export function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
