import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Clock } from "../core/clock.js";
import { AgentError } from "./errors.js";

/**
 * The agent's own Prometheus metrics, in the text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/), written by hand: cert-agent
 * ships on every host, and the handful of series below do not justify a dependency (prom-client)
 * in each of them. What the format asks of this writer: one `# HELP` and one `# TYPE` line per
 * family before its samples, `\` and newline escaped in HELP text, `\`, `"` and newline escaped in
 * label values, numbers as Go's ParseFloat reads them (+Inf, -Inf, NaN spelled so), a final newline.
 */

export type RenewalResult = "ok" | "error";
export type RenewalVia = "sign" | "renew";
export type OcspRefreshResult = "ok" | "error";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function escapeHelp(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function escapeLabel(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

type Labels = Record<string, string>;

function sample(name: string, labels: Labels, value: number): string {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return `${name}${l.length ? `{${l.join(",")}}` : ""} ${formatValue(value)}\n`;
}

function family(name: string, type: "gauge" | "counter", help: string, samples: { labels?: Labels; value: number }[]): string {
  if (samples.length === 0) return ""; // nothing known yet: no family rather than a made-up value
  return `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n${samples.map((s) => sample(name, s.labels ?? {}, s.value)).join("")}`;
}

/** The bound metrics listener. */
export interface MetricsListener {
  /** host:port actually bound (the port filled in when 0 was asked for); IPv6 hosts in brackets. */
  address: string;
  close(): Promise<void>;
}

/**
 * `--metrics-listen` value: HOST:PORT, `[IPv6]:PORT`, or `:PORT` for every interface (the form
 * node_exporter's --web.listen-address takes). Port 0 asks for any free port.
 */
export function parseListenAddress(addr: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65_535) throw new AgentError(`--metrics-listen must be HOST:PORT (e.g. 127.0.0.1:9101, [::1]:9101, :9101), not ${JSON.stringify(addr)}`);
  const host = m[1] ?? m[2];
  return { host: host ? host : undefined, port };
}

/**
 * Counters and gauges the agent loop feeds, rendered on each scrape. Time comes from the injected
 * clock (DESIGN: domain code never reads Date.now()), so the "seconds until expiry" gauge is
 * computed at scrape time and tests can move it.
 */
export class AgentMetrics {
  #cert: { serial: string; notAfter: Date } | undefined;
  #lastSuccess: Date | undefined;
  // Every label combination starts at 0 (Prometheus "Instrumentation" guidance: avoid missing
  // metrics), so rate() and increase() see the first error rather than a series appearing at 1.
  readonly #renewals = new Map<string, number>([
    ["ok/sign", 0],
    ["ok/renew", 0],
    ["error/sign", 0],
    ["error/renew", 0],
  ]);
  readonly #ocsp = new Map<OcspRefreshResult, number>([
    ["ok", 0],
    ["error", 0],
  ]);

  constructor(private readonly clock: Clock) {}

  /** The certificate now published. */
  certificate(serial: string, notAfter: Date): void {
    this.#cert = { serial, notAfter };
  }

  /** One obtain attempt: via "sign" (the token) or "renew" (mTLS), and how it ended. */
  renewal(result: RenewalResult, via: RenewalVia): void {
    const k = `${result}/${via}`;
    this.#renewals.set(k, (this.#renewals.get(k) ?? 0) + 1);
  }

  ocspRefresh(result: OcspRefreshResult): void {
    this.#ocsp.set(result, (this.#ocsp.get(result) ?? 0) + 1);
  }

  /** A completed cycle (cert obtained or OCSP refreshed, and published). */
  success(at: Date): void {
    this.#lastSuccess = at;
  }

  render(): string {
    const now = this.clock.now().getTime();
    const c = this.#cert;
    return [
      family("certagent_up", "gauge", "1 while the cert-agent process runs.", [{ value: 1 }]),
      // The serial sits on an info metric, not on the expiry gauges: a label that changes with every
      // renewal would start a new series each time and break alerts over the expiry (the _info
      // pattern, as kube-state-metrics and node_exporter's *_info do).
      family("certagent_cert_info", "gauge", "The published certificate; its serial as a label, value always 1.", c ? [{ labels: { serial: c.serial }, value: 1 }] : []),
      // A timestamp, as cert-manager's certmanager_certificate_expiration_timestamp_seconds: alert with
      // `certagent_cert_expiry_timestamp_seconds - time() < 3600`.
      family("certagent_cert_expiry_timestamp_seconds", "gauge", "notAfter of the published certificate, in Unix seconds.", c ? [{ value: c.notAfter.getTime() / 1000 }] : []),
      family(
        "certagent_cert_expiry_seconds",
        "gauge",
        "Seconds until the published certificate expires, computed at scrape time (negative once expired).",
        c ? [{ value: (c.notAfter.getTime() - now) / 1000 }] : [],
      ),
      family(
        "certagent_renewals_total",
        "counter",
        "Attempts to obtain a certificate, by result and by way (sign: bootstrap token, renew: mTLS with the current certificate).",
        [...this.#renewals].map(([k, value]) => {
          const [result, via] = k.split("/") as [string, string];
          return { labels: { result, via }, value };
        }),
      ),
      family(
        "certagent_last_success_timestamp_seconds",
        "gauge",
        "When the agent last published a set (new certificate or fresh OCSP response), in Unix seconds.",
        this.#lastSuccess ? [{ value: this.#lastSuccess.getTime() / 1000 }] : [],
      ),
      family(
        "certagent_ocsp_refresh_total",
        "counter",
        "OCSP response fetches for stapling, by result.",
        [...this.#ocsp].map(([result, value]) => ({ labels: { result }, value })),
      ),
    ].join("");
  }

  /**
   * Serves GET /metrics (404 for any other path, 405 for another method) on plain HTTP: what a
   * Prometheus scrape expects. The page holds no secret (serials are public in the CA's CRL and
   * OCSP), but bind it to localhost or a management interface all the same.
   */
  async listen(addr: string): Promise<MetricsListener> {
    const { host, port } = parseListenAddress(addr);
    const server: Server = createServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://agent").pathname;
      if (path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
        return;
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
        return;
      }
      const body = this.render();
      res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE, "content-length": Buffer.byteLength(body) });
      res.end(req.method === "HEAD" ? undefined : body);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) => reject(new AgentError(`--metrics-listen ${addr}: cannot listen (${e.code ?? e.message})`)));
      server.listen(port, host, () => resolve());
    });
    const a = server.address() as AddressInfo;
    return {
      address: a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections(); // keep-alive scrapers would otherwise hold close() open
        }),
    };
  }
}
