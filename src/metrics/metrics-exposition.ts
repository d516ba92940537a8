import { AggregatorRegistry } from "prom-client";
import type { CaMetrics, MetricsReport } from "./ca-metrics.js";

/** What GET /metrics serves: the Prometheus text and its Content-Type. */
export interface MetricsExposition {
  readonly contentType: string;
  render(): Promise<string>;
}

/**
 * The whole daemon's metrics, rendered by the primary: its own and every worker's report
 * (`peers`), merged by prom-client's AggregatorRegistry.aggregate (counters and histograms
 * summed, gauges by each metric's aggregator). Only its static `aggregate` is used, never an
 * AggregatorRegistry instance: an instance installs node:cluster message listeners of its own,
 * and the reports travel on the workers' protocol instead (cli/public-worker-protocol.ts).
 */
export function daemonExposition(own: CaMetrics, peers: () => Promise<MetricsReport[]>): MetricsExposition {
  return {
    contentType: own.contentType,
    async render() {
      const others = await peers();
      // Alone (no workers), the registry speaks for itself: merging would only drop the series
      // whose aggregator is "omit" (process_start_time_seconds).
      if (others.length === 0) return own.registry.metrics();
      return AggregatorRegistry.aggregate([await own.report(), ...others]).metrics();
    },
  };
}
