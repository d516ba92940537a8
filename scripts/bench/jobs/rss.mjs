import { round } from "../report.mjs";
import { peakRssMb } from "../fleetca-daemon.mjs";

/**
 * Memory: rss_idle_mb is the OCSP fixture daemon's memory 2 s after start, before any load (its
 * VmRSS; with public workers the PSS of its processes together, so the pages they share count
 * once); rss_peak_mb the highest peak of every daemon this run started (FleetcaDaemon.recordPeak,
 * read before each is stopped). Runs last so the peak covers the jobs before it.
 */
export default {
  name: "rss",
  keys: ["rss_idle_mb", "rss_peak_mb"],
  async run(ctx) {
    const f = await ctx.fleet();
    const idle = round(f.idleRssKb / 1024);
    f.daemon.recordPeak();
    const peak = round(peakRssMb());
    return { status: "ok", figures: { rss_idle_mb: idle, rss_peak_mb: peak }, text: `idle ${idle} MB, peak ${peak} MB` };
  },
};
