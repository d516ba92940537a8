import { afterAll, describe, expect, it } from "vitest";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { scrape } from "./harness/prometheus.js";

/**
 * CI runs the suite on each supported Node (.ci/run): the daemons the tests start must run on the
 * Node that runs the tests, not on whatever `node` comes first on PATH, or a run "on Node 24"
 * would test Node 20's daemon. The daemon reports its runtime in prom-client's default metrics.
 */
describe("runtime", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("the daemon subprocess runs on the test runner's Node (nodejs_version_info)", async () => {
    const d = await ws.start();
    try {
      const m = await scrape(`${d.publicUrl}/metrics`);
      expect(m.status).toBe(200);
      const info = m.samples.find((s) => s.name === "nodejs_version_info");
      expect(info?.labels.version).toBe(process.version);
    } finally {
      await d.stop();
    }
  });
});
