import type { Server as TlsServer } from "node:tls";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from "prom-client";
import type { Clock } from "../core/clock.js";
import type { TokenRejection } from "../core/errors.js";
import type { CrlPublicationObserver } from "../revocation/crl/crl-publisher.js";
import { RATE_LIMITS, type RateLimitName } from "../registration/rate-limits.js";

/** What one process's registry holds, as `Registry.getMetricsAsJSON()` gives it: what workers send the primary. */
export type MetricsReport = MetricObjectWithValues<MetricValue<string>>[];

/** Why a key signed (classified from what it signed: signature-counter.ts). */
export type SignaturePurpose = "certificate" | "crl" | "ocsp" | "probe";
export const SIGNATURE_PURPOSES: readonly SignaturePurpose[] = ["certificate", "crl", "ocsp", "probe"];

/** A counter series with its labels already resolved: `inc()` does no label lookup of its own. */
export interface CountedSeries {
  inc(): void;
}

/** How a certificate came to be issued to a host. */
export type IssuanceKind = "sign" | "renew";

/**
 * Request durations in seconds: from a cached OCSP-like answer (sub-millisecond) to a renewal
 * storm's queued signature (seconds).
 */
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** A CRL of a few entries takes milliseconds; one of a million, tens of seconds. */
const CRL_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120];
const HTTP_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

/** Reports counts (status and source label values, how many) gathered since the last call, and forgets them. */
export type OcspCountDrain = (add: (status: string, source: string, n: number) => void) => void;

/** Key ids are 40 hex digits; 16 tell an operator's few keys apart and keep label values short. */
export function shortKeyId(keyIdHex: string): string {
  return keyIdHex.slice(0, 16);
}

/**
 * fleetca's Prometheus metrics for one process (the primary or a worker), in a Registry of its
 * own rather than prom-client's global one, so in-process daemons (tests) do not share counters.
 * Names follow Prometheus conventions (`_total` counters, base units); README "Metrics" lists
 * them. Label values come from closed sets or from configuration (provisioner names, key ids,
 * route patterns), never from a request: nothing a client sends can grow the series count.
 *
 * Node's default process metrics are registered under their standard names (process_*, nodejs_*)
 * so existing Node.js dashboards work as they are; fleetca's own all start with `fleetca_`.
 */
export class CaMetrics {
  readonly registry = new Registry();
  readonly #issued: Counter<"provisioner" | "kind">;
  readonly #tokens: Counter<"result" | "reason">;
  readonly #signatures: Counter<"key" | "purpose">;
  readonly #ocspResponses: Counter<"status" | "source">;
  readonly #crlSeconds: Histogram;
  readonly #crlEntries: Gauge<"issuer">;
  readonly #handshakes: Counter<"result">;
  readonly #httpSeconds: Histogram<"route" | "method" | "status">;
  readonly #auditTreeSize: Gauge;
  readonly #auditSignedTreeSize: Gauge;
  readonly #rateLimited: Counter<"limit">;
  readonly #expiries = new Map<string, () => Date | null | undefined>();
  readonly #ocspDrains: OcspCountDrain[] = [];
  readonly #tokenOk: CountedSeries;

  constructor(opts: { clock: Clock; defaultMetrics?: boolean }) {
    const registers = [this.registry];
    this.#issued = new Counter({
      name: "fleetca_certificates_issued_total",
      help: "Certificates issued to hosts: kind=sign with a token (POST /v1/sign), kind=renew over mTLS (POST /v1/renew).",
      labelNames: ["provisioner", "kind"],
      registers,
    });
    this.#tokens = new Counter({
      name: "fleetca_token_verify_total",
      help: "Tokens presented to POST /v1/sign: result=ok when the token paid for a certificate, refused with the SPEC reason (expired, replayed, ...).",
      labelNames: ["result", "reason"],
      registers,
    });
    this.#signatures = new Counter({
      name: "fleetca_signatures_total",
      help: "Signatures made by each CA key (key = its key id's first 16 hex digits), by what was signed.",
      labelNames: ["key", "purpose"],
      registers,
    });
    const ocspDrains = this.#ocspDrains;
    this.#ocspResponses = new Counter({
      name: "fleetca_ocsp_responses_total",
      help: "OCSP answers sent, by certificate status (or failure) and by what answered: cached (exact request seen before), presigned, signed (for this request), none (a failure).",
      labelNames: ["status", "source"],
      registers,
      // The hot path counts in a typed array of its own (ocsp-answer-counter.ts); added here at each scrape.
      collect() {
        for (const drain of ocspDrains) drain((status, source, n) => this.inc({ status, source }, n));
      },
    });
    this.#crlSeconds = new Histogram({
      name: "fleetca_crl_generation_seconds",
      help: "Time to build, sign and store one CRL (a full CRL or a partition).",
      buckets: CRL_BUCKETS,
      registers,
    });
    this.#crlEntries = new Gauge({
      name: "fleetca_crl_entries",
      help: "Entries in the full CRL each issuer serves now.",
      labelNames: ["issuer"],
      // Only the primary publishes CRLs; should workers ever report it, they serve the same list.
      aggregator: "max",
      registers,
    });
    const expiries = this.#expiries;
    const clock = opts.clock;
    new Gauge({
      name: "fleetca_cert_expiry_seconds",
      help: "Seconds until notAfter of each CA certificate (root:<key id>, intermediate:<key id>) and the API's serving certificate (api).",
      labelNames: ["name"],
      // The soonest, should two processes track the same name.
      aggregator: "min",
      registers,
      collect() {
        this.reset();
        const now = clock.now().getTime();
        for (const [name, notAfter] of expiries) {
          const d = notAfter();
          if (d) this.set({ name }, (d.getTime() - now) / 1000);
        }
      },
    });
    this.#handshakes = new Counter({
      name: "fleetca_tls_handshakes_total",
      help: "TLS handshakes on the API listener: ok, or failed (a client error before the handshake completed).",
      labelNames: ["result"],
      registers,
    });
    this.#httpSeconds = new Histogram({
      name: "fleetca_http_request_duration_seconds",
      help: "HTTP requests by route pattern (never the raw URL), method and status. OCSP is counted by fleetca_ocsp_responses_total, not timed here.",
      labelNames: ["route", "method", "status"],
      buckets: HTTP_BUCKETS,
      registers,
    });
    this.#auditTreeSize = new Gauge({
      name: "fleetca_audit_tree_size",
      help: "Leaves in the audit log's Merkle tree.",
      aggregator: "max",
      registers,
    });
    // The audit key has no certificate, so no expiry to watch; what can go wrong is a head that
    // is not signed: alert on fleetca_audit_tree_size - fleetca_audit_signed_tree_size > 0 for
    // longer than a few audit.treeHeadInterval.
    this.#auditSignedTreeSize = new Gauge({
      name: "fleetca_audit_signed_tree_size",
      help: "Leaves covered by the audit log's latest signed tree head.",
      aggregator: "max",
      registers,
    });
    this.#rateLimited = new Counter({
      name: "fleetca_rate_limited_total",
      help: "Requests refused with 429 rate_limited, by the limit they were over (config rateLimits).",
      labelNames: ["limit"],
      registers,
    });
    // Every limit shows from the start (at 0), so an alert on its rate needs no absent() clause.
    for (const limit of RATE_LIMITS) this.#rateLimited.inc({ limit }, 0);
    this.#tokenOk = this.#tokens.labels("ok", "");
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** This process's metrics, for the primary to merge (metrics-exposition.ts). */
  report(): Promise<MetricsReport> {
    return this.registry.getMetricsAsJSON();
  }

  certificateIssued(provisioner: string, kind: IssuanceKind): void {
    this.#issued.inc({ provisioner, kind });
  }

  tokenAccepted(): void {
    this.#tokenOk.inc();
  }

  rateLimited(limit: RateLimitName): void {
    this.#rateLimited.inc({ limit });
  }

  tokenRefused(reason: TokenRejection | "other"): void {
    this.#tokens.inc({ result: "refused", reason });
  }

  /** One pre-resolved series per purpose for a key: signature-counter.ts counts through them. */
  signaturesBy(keyIdHex: string): Record<SignaturePurpose, CountedSeries> {
    const key = shortKeyId(keyIdHex);
    return Object.fromEntries(SIGNATURE_PURPOSES.map((p) => [p, this.#signatures.labels(key, p)])) as Record<SignaturePurpose, CountedSeries>;
  }

  /**
   * Adds counts kept outside prom-client to fleetca_ocsp_responses_total at each scrape: `drain`
   * hands over what was counted since its last call (ocsp-answer-counter.ts).
   */
  drainOcspResponsesAtScrape(drain: OcspCountDrain): void {
    this.#ocspDrains.push(drain);
  }

  /** CRL publishers report here (crl-publisher.ts); the entries gauge is for full CRLs, partitions only add to the histogram. */
  readonly crlObserver: CrlPublicationObserver = {
    built: (_scope, _entries, seconds) => this.#crlSeconds.observe(seconds),
    serving: (scope, entries) => {
      if (scope.shard === null) this.#crlEntries.set({ issuer: shortKeyId(scope.issuerKeyId) }, entries);
    },
  };

  /**
   * Reports `fleetca_cert_expiry_seconds{name}` from `notAfter()`, read at each scrape (so a
   * renewed certificate shows at once); null or undefined leaves the series out. A second call
   * with the same name replaces the first.
   */
  trackExpiry(name: string, notAfter: () => Date | null | undefined): void {
    this.#expiries.set(name, notAfter);
  }

  /** Counts the handshakes of a TLS listener (the API's): completed, or failed with a client error. */
  countTlsHandshakes(server: TlsServer): void {
    const ok = this.#handshakes.labels("ok");
    const failed = this.#handshakes.labels("failed");
    server.on("secureConnection", () => ok.inc());
    server.on("tlsClientError", () => failed.inc());
  }

  /** One HTTP request done; `route` is the pattern that matched ("unmatched" for none). */
  httpRequestDone(route: string, method: string, status: number, seconds: number): void {
    this.#httpSeconds.observe({ route, method: HTTP_METHODS.has(method) ? method : "other", status: String(status) }, seconds);
  }

  /**
   * `fleetca_storage_up`: 1 when the database answers `answers` (the probe /healthz makes, with
   * its timeout: health-check.ts), 0 when it does not, asked at each scrape. Called by the
   * primary only, once: workers never register it, so a merged scrape carries the primary's value.
   */
  watchStorage(answers: () => Promise<boolean>): void {
    new Gauge({
      name: "fleetca_storage_up",
      help: "1 when this replica's database answers the probe /healthz makes (within its timeout), 0 when it does not; probed at each scrape.",
      // Only the primary reports it; should another process ever report it too, one that cannot
      // reach the database is what an operator must see.
      aggregator: "min",
      registers: [this.registry],
      async collect() {
        this.set((await answers()) ? 1 : 0);
      },
    });
  }

  /**
   * `fleetca_leases_held{lease}`: for each lease this replica keeps (lease-keeper.ts, names from
   * configuration and issuers), 1 while it holds it, 0 while another replica does. Called by the
   * primary only, once, and only where leases exist (replicas on PostgreSQL).
   */
  watchLeases(leases: () => readonly { name: string; held: boolean }[]): void {
    new Gauge({
      name: "fleetca_leases_held",
      help: "Leases this replica keeps (crl/<issuer key id>/<full|partition>): 1 while it holds the lease and does its work, 0 while another replica holds it.",
      labelNames: ["lease"],
      // Only the primary keeps leases; max should another process ever report one.
      aggregator: "max",
      registers: [this.registry],
      collect() {
        // A lease no longer kept (its issuer gone) leaves with it.
        this.reset();
        for (const l of leases()) this.set({ lease: l.name }, l.held ? 1 : 0);
      },
    });
  }

  /**
   * `fleetca_revocation_notifications_up`: 1 while the LISTEN session for other replicas'
   * revocations is connected (pg-revocation-notifications.ts), 0 while it reconnects and the
   * one-second poll is all there is. Called by the primary only, once, on PostgreSQL.
   */
  watchRevocationNotifications(listening: () => boolean): void {
    new Gauge({
      name: "fleetca_revocation_notifications_up",
      help: "PostgreSQL: 1 while this replica LISTENs for the revocations other replicas commit, 0 while that session reconnects (revocations then arrive by polling, within a second).",
      aggregator: "min",
      registers: [this.registry],
      collect() {
        this.set(listening() ? 1 : 0);
      },
    });
  }

  /** For the audit log (wired by its owner): the Merkle tree's size and what its latest signed head covers. */
  setAuditTreeSize(n: number, signed: number): void {
    this.#auditTreeSize.set(n);
    this.#auditSignedTreeSize.set(signed);
  }
}
