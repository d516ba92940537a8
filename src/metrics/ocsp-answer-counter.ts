import type { OcspAnswerSource, OcspAnswerStatus } from "../revocation/ocsp/ocsp-responder.js";
import type { CaMetrics } from "./ca-metrics.js";

/** Label values: the certificate statuses as RFC 6960 names them, the failures in snake case. */
const STATUS_LABELS: Record<OcspAnswerStatus, string> = {
  good: "good",
  revoked: "revoked",
  unknown: "unknown",
  multiple: "multiple",
  malformedRequest: "malformed",
  unauthorized: "unauthorized",
  tryLater: "try_later",
  internalError: "internal_error",
};
const STATUSES = Object.keys(STATUS_LABELS) as OcspAnswerStatus[];
const SOURCES: readonly OcspAnswerSource[] = ["cached", "presigned", "signed", "none"];
const STATUS_INDEX = Object.fromEntries(STATUSES.map((s, i) => [s, i])) as Record<OcspAnswerStatus, number>;
const SOURCE_INDEX = Object.fromEntries(SOURCES.map((s, i) => [s, i * STATUSES.length])) as Record<OcspAnswerSource, number>;

/**
 * fleetca_ocsp_responses_total for the OCSP hot path (api/public-hot-path.ts), which serves
 * ~26,000 answers a second per core. A prom-client counter's inc() validates and hashes its
 * labels on every call (~400 ns, measured, about 1 % of a core at that rate); here an answer is
 * one increment in a typed array (no allocation), and the counts are handed to the prom-client
 * counter when it is scraped (CaMetrics.drainOcspResponsesAtScrape), so nothing is lost.
 */
export class OcspAnswerCounter {
  readonly #counts = new Float64Array(SOURCES.length * STATUSES.length);

  constructor(metrics: CaMetrics) {
    metrics.drainOcspResponsesAtScrape((add) => {
      const counts = this.#counts;
      for (let src = 0; src < SOURCES.length; src++) {
        for (let st = 0; st < STATUSES.length; st++) {
          const i = src * STATUSES.length + st;
          if (counts[i] === 0) continue;
          add(STATUS_LABELS[STATUSES[st]!], SOURCES[src]!, counts[i]!);
          counts[i] = 0;
        }
      }
    });
  }

  count(a: { status: OcspAnswerStatus; source: OcspAnswerSource }): void {
    this.#add(SOURCE_INDEX[a.source] + STATUS_INDEX[a.status]);
  }

  /** A refusal the HTTP layer makes itself (an undecodable GET, a body over 64 KiB). */
  refused(status: OcspAnswerStatus): void {
    this.#add(SOURCE_INDEX.none + STATUS_INDEX[status]);
  }

  #add(i: number): void {
    this.#counts[i] = this.#counts[i]! + 1;
  }
}
