import { closeSync, existsSync, fsyncSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { seedCertificates } from "../seed-certificates.mjs";
import { countCrlEntries } from "../crl-der.mjs";
import { runBounded } from "../processes.mjs";
import { round } from "../report.mjs";

/**
 * CRL build of `count` revoked, unexpired certificates: seeded into a stopped daemon, then a
 * restart signs a CRL (the stored one no longer matches the revocations). The figure is the
 * daemon's own {msg: "CRL published", entries, buildMs} for the full CRL (no shard or shard
 * "full") listing all seeded entries; the CRL served at GET /crl must list them and verify
 * with openssl. Peak RSS is the daemon's VmHWM after the build.
 */
export function crlBuildJob({ name, count, key, peer, ratios }) {
  return {
    name,
    keys: [key, `${name}_rss_peak_mb`],
    async run(ctx) {
      const n = count(ctx.opts);
      const dir = ctx.tempDir(name);
      const first = await ctx.startDaemon(dir);
      const extra = first.lines.filter((l) => l.msg === "CRL published").at(-1)?.entries ?? 0;
      await first.stop();
      const t0 = Date.now();
      seedCertificates(join(dir, "data"), { count: n, revoked: true });
      flushSeeded(join(dir, "data"));
      ctx.log(`${name}: seeded ${n} revoked rows in ${round((Date.now() - t0) / 1000, 1)} s`);
      const d = await ctx.startDaemon(dir, { waitReady: false });
      const want = n + extra;
      const boundS = n >= 1_000_000 ? 600 : 180;
      const line = await d.waitFor((l) => l.msg === "CRL published" && (l.shard === undefined || l.shard === "full") && l.entries === want, boundS * 1000);
      if (!line) {
        const seen = d.lines.filter((l) => l.msg === "CRL published").map((l) => l.entries);
        const why = d.exited ? d.whyNot() : `no "CRL published" with entries=${want} within ${boundS} s${seen.length ? ` (saw entries ${seen.join(",")})` : ""}`;
        return { status: "failed", reason: why, figures: {} };
      }
      // buildMs is the daemon's own measure; a daemon that does not log it gets spawn→log wall time.
      const s = typeof line.buildMs === "number" ? line.buildMs / 1000 : line._atMs / 1000;
      const how = typeof line.buildMs === "number" ? "buildMs" : "no buildMs: spawn→log wall time";
      await d.waitReady(60_000);
      const res = await fetch(`${d.publicUrl}/crl`, { signal: AbortSignal.timeout(60_000) });
      const der = Buffer.from(await res.arrayBuffer());
      const listed = res.ok ? countCrlEntries(der) : -1;
      if (listed !== want) return { status: "failed", reason: `GET /crl lists ${listed}, expected ${want}`, figures: {} };
      const verified = await verifyCrl(d, dir, der);
      if (verified !== true) return { status: "failed", reason: verified, figures: {} };
      const hwmMb = d.recordPeak() / 1024;
      await d.stop();
      return {
        status: "ok",
        figures: { [key]: round(s, 3), [`${name}_rss_peak_mb`]: round(hwmMb) },
        text: `${round(s, 3)} s, peak RSS ${round(hwmMb)} MB (${n} entries; ${how})`,
      };
    },
    peer,
    ratios,
  };
}

/**
 * Seeding writes ~150 MB (100,000 rows) with synchronous=OFF, as set-up that is not measured.
 * Left dirty in the page cache, that write-back would be paid by the daemon's first fsync — the
 * WAL checkpoint inside its CRL write — and counted in buildMs (measured: ~150–250 ms of a
 * 100,000-entry build). A CA's revoked rows were committed (fsynced) when they were revoked, so
 * the seeded file is flushed before the daemon starts.
 */
function flushSeeded(dataDir) {
  for (const f of ["fleetca.db", "fleetca.db-wal"]) {
    const path = join(dataDir, f);
    if (!existsSync(path)) continue;
    const fd = openSync(path, "r+");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** openssl checks the served CRL's signature against the intermediate (and parses all of it). */
async function verifyCrl(d, dir, der) {
  const inter = Buffer.from(await (await fetch(`${d.publicUrl}/intermediate.crt`, { signal: AbortSignal.timeout(10_000) })).arrayBuffer());
  const pem = `-----BEGIN CERTIFICATE-----\n${inter.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE-----\n`;
  writeFileSync(join(dir, "issuer.pem"), pem.replace(/\n\n/g, "\n"));
  writeFileSync(join(dir, "served.crl"), der);
  const r = await runBounded("openssl", ["crl", "-inform", "DER", "-in", join(dir, "served.crl"), "-CAfile", join(dir, "issuer.pem"), "-noout"], { timeoutMs: 120_000 });
  return /verify OK/.test(r.stdout + r.stderr) ? true : `openssl crl does not verify: ${(r.stderr || r.stdout).trim().split("\n")[0]}`;
}
