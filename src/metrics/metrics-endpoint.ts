import { createServer, type Server } from "node:http";
import express, { Router } from "express";
import type { Logger } from "pino";
import { CaError } from "../core/errors.js";
import { errorHandler, notFound } from "../api/http-errors.js";
import { CONNECTIONS_CHECK_MS, hardenTimeouts } from "../api/listener.js";
import type { MetricsExposition } from "./metrics-exposition.js";

/**
 * GET /metrics in the Prometheus text format, with the registry's own Content-Type (sent as is:
 * express's send() would re-order its parameters). No caching: every scrape reads the counters now.
 */
export function metricsRouter(exposition: MetricsExposition): Router {
  const router = Router();
  router.get("/metrics", async (_req, res) => {
    let text: string;
    try {
      text = await exposition.render();
    } catch (err) {
      throw new CaError("unavailable", "metrics could not be gathered", { cause: err });
    }
    res.writeHead(200, { "Content-Type": exposition.contentType, "Cache-Control": "no-store", "Content-Length": Buffer.byteLength(text) }).end(text);
  });
  return router;
}

/**
 * The listener config `listen.metrics` asks for (plain HTTP): /metrics only, so a scraper can be
 * let in where relying parties are not, and /metrics leaves the public listener.
 */
export function createMetricsServer(exposition: MetricsExposition, log: Logger, handshakeTimeoutMs: number): Server {
  const app = express();
  app.disable("x-powered-by");
  app.use(metricsRouter(exposition));
  app.use(notFound);
  app.use(errorHandler(log));
  const server = createServer({ connectionsCheckingInterval: CONNECTIONS_CHECK_MS }, app);
  // The same deadlines as the other listeners (listen.handshakeTimeout).
  hardenTimeouts(server, handshakeTimeoutMs);
  return server;
}
