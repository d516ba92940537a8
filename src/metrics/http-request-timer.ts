import { performance } from "node:perf_hooks";
import type { Request, RequestHandler } from "express";
import type { CaMetrics } from "./ca-metrics.js";

/**
 * Express middleware for fleetca_http_request_duration_seconds, mounted before every route: the
 * time from the request reaching the app to the last byte of the answer handed to the socket.
 * The route label is the pattern that matched ("/v1/certs/:serial"), never the URL, so serials
 * and keys in paths add no series; requests no route matched share "unmatched".
 */
export function timeRequests(metrics: CaMetrics): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    res.once("finish", () => metrics.httpRequestDone(routeOf(req), req.method, res.statusCode, (performance.now() - started) / 1000));
    next();
  };
}

/** The matched route's pattern: express leaves the Route on the request once it dispatched to it. */
function routeOf(req: Request): string {
  const path: unknown = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path === "string") return `${req.baseUrl}${path}`;
  if (Array.isArray(path)) return path.map((p) => `${req.baseUrl}${String(p)}`).join("|");
  return "unmatched";
}
