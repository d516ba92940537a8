import { join } from "node:path";
import { seedCertificates } from "../seed-certificates.mjs";
import { round } from "../report.mjs";
import cfsslOcsprefresh from "../peers/cfssl-ocsprefresh.mjs";

const FINISHED = "OCSP pre-signing finished";

/**
 * Start-up pre-signing: N valid certificates seeded into a stopped daemon's inventory, then a
 * restart; the daemon's own log line {msg: "OCSP pre-signing finished", signed, ms} gives the
 * rate (signed / ms). A daemon that does not pre-sign never logs it: once it is ready and its
 * CPU has been idle for a few seconds (or at the hard bound), the job says n/a, not FAILED.
 */
export default {
  name: "ocsp_presign",
  keys: ["ocsp_presign_per_s"],
  async run(ctx) {
    const n = ctx.opts.quick ? 10_000 : 100_000;
    const dir = ctx.tempDir("presign");
    const first = await ctx.startDaemon(dir);
    await first.stop();
    seedCertificates(join(dir, "data"), { count: n, revoked: false });
    const d = await ctx.startDaemon(dir, { waitReady: false });
    const boundS = ctx.opts.quick ? 90 : 300;
    const line = await d.waitFor((l) => l.msg === FINISHED, boundS * 1000, { giveUp: idleAfterReady(d) });
    if (!line) {
      if (d.exited) return { status: "failed", reason: d.whyNot(), figures: {} };
      return { status: "n/a", reason: "daemon does not pre-sign", figures: {} };
    }
    const perS = line.signed / (line.ms / 1000);
    const note = line.signed < n ? ` (only ${line.signed} of ${n} seeded)` : "";
    return {
      status: "ok",
      figures: { ocsp_presign_per_s: round(perS) },
      text: `${round(perS)} /s (${line.signed} in ${round(line.ms / 1000, 2)} s; log at ${round(line._atMs / 1000, 1)} s after spawn)${note}`,
    };
  },
  peer: cfsslOcsprefresh,
  ratios: [{ key: "ratio_ocsp_presign_per_s", ours: "ocsp_presign_per_s", peer: "peer_ocsp_presign_per_s", target: "≥ 10" }],
};

/** True once the daemon is ready and has used < 0.1 s of CPU over the last 5 s. */
function idleAfterReady(d) {
  const samples = [];
  return async () => {
    if (!d.lines.some((l) => l.msg === "fleetca ready")) return false;
    samples.push({ at: Date.now(), ticks: d.cpuTicks() });
    const old = samples.find((s) => Date.now() - s.at >= 5_000);
    if (!old) return false;
    while (samples.length && Date.now() - samples[0].at > 6_000) samples.shift();
    return samples.at(-1).ticks - old.ticks < 10;
  };
}
