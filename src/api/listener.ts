import type { Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { OperatorError } from "../core/errors.js";

/** Slow or idle clients cannot hold a listener's sockets for long. */
export function hardenTimeouts(s: HttpServer | HttpsServer): void {
  s.headersTimeout = 10_000;
  s.requestTimeout = 30_000;
  s.keepAliveTimeout = 5_000;
  s.maxHeadersCount = 100;
}

/** Binds a listener; a port in use or a bad address is the operator's mistake, named by its config key. */
export function listen(server: HttpServer | HttpsServer, host: string, port: number, key: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) =>
      reject(new OperatorError(`cannot listen on ${host}:${port} (${key}): ${e.code ?? e.message}`));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

export function closeServer(s: HttpServer | HttpsServer): Promise<void> {
  return new Promise((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections();
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
