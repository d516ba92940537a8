import type { OcspAnswerSource, OcspAnswerStatus } from "../revocation/ocsp/ocsp-responder.js";
import type { CaMetrics, CountedSeries } from "./ca-metrics.js";

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
const SOURCES: readonly OcspAnswerSource[] = ["cached", "presigned", "signed", "none"];

/**
 * fleetca_ocsp_responses_total for the OCSP hot path (api/public-hot-path.ts), which serves
 * ~26,000 answers a second per core: every (source, status) series is resolved once here, so
 * counting an answer is two property reads and the series' inc(), with no label lookup.
 */
export class OcspAnswerCounter {
  readonly #series: Record<OcspAnswerSource, Record<OcspAnswerStatus, CountedSeries>>;

  constructor(metrics: CaMetrics) {
    const bySource = (source: OcspAnswerSource) =>
      Object.fromEntries(Object.entries(STATUS_LABELS).map(([status, label]) => [status, metrics.ocspResponses(label, source)])) as Record<OcspAnswerStatus, CountedSeries>;
    this.#series = Object.fromEntries(SOURCES.map((s) => [s, bySource(s)])) as Record<OcspAnswerSource, Record<OcspAnswerStatus, CountedSeries>>;
  }

  count(a: { status: OcspAnswerStatus; source: OcspAnswerSource }): void {
    this.#series[a.source][a.status].inc();
  }

  /** A refusal the HTTP layer makes itself (an undecodable GET, a body over 64 KiB). */
  refused(status: OcspAnswerStatus): void {
    this.#series.none[status].inc();
  }
}
