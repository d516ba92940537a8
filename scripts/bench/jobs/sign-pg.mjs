import { mkdirSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { benchPlatform, fetchRoots } from "../issuance-fixture.mjs";
import { startBenchPostgres } from "../postgres.mjs";
import { round } from "../report.mjs";
import { signWindow, signFigures, signText } from "./sign.mjs";

/**
 * sign_16 with the certificates in PostgreSQL (issue 17): `storage: { type: postgres }` on a
 * throwaway cluster of this run (postgres.mjs: loopback, fsync ON, as a deployment runs it), with
 * 1 or 2 fleetca replicas on the one database. Each replica has its own dataDir and listeners and
 * the same passphrase, publicUrl and apiUrl (as replicas behind one load balancer: docs/ha.md).
 * The window is sign_16's (signWindow in sign.mjs: the same wrk, 16 connections, bodies, tokens,
 * checks); with 2 replicas wrk's thread k sends to replica k mod 2, 8 connections each.
 *
 * Beside the figure, the text says what the database sessions did during the window (the share
 * of busy-session samples per wait event, postgres.mjs watchDatabase), PostgreSQL's CPU, and
 * commits and WAL flushes over the window: what limits the rate. The ratio column gives it over
 * the SQLite sign_16 of the same run (when it ran: `--only sign_16,sign_pg_1,sign_pg_2`).
 */
const PUBLIC_URL = "http://ca.bench.invalid";
const API_URL = "https://ca.bench.invalid";
const CONNECTIONS = 16;

function signPgJob({ name, replicas, prefix }) {
  return {
    name,
    keys: [`${prefix}_per_s`, `${prefix}_p50_ms`, `${prefix}_p99_ms`, `${prefix}_cores`, `${prefix}_pg_cores`, `${prefix}_vs_sqlite`],
    async run(ctx) {
      const dir = ctx.tempDir(name);
      const platform = benchPlatform(dir);
      const db = await startBenchPostgres(ctx, name);
      const daemons = [];
      let watcher = null;
      try {
        const passphrase = randomBytes(18).toString("base64url");
        const config = [platform.provisionersLine, `storage: { type: postgres, url: "${db.url}" }`, `publicUrl: ${PUBLIC_URL}`, `apiUrl: ${API_URL}`];
        // The first replica makes the CA in the empty database; the others then join it.
        for (let i = 0; i < replicas; i++) {
          const rdir = join(dir, `replica-${i}`);
          mkdirSync(rdir, { mode: 0o700 });
          // benchEnv (fleetca-daemon.mjs) reads the passphrase from here: one for all replicas.
          writeFileSync(join(rdir, ".pass"), passphrase, { mode: 0o600 });
          daemons.push(await ctx.startDaemon(rdir, { extraConfig: config }));
        }
        const roots = await fetchRoots(dir, daemons[0]);
        let pgCpu = null;
        const during = async () => {
          watcher = await db.watch();
          const t0 = performance.now();
          const c0 = db.cpuTicks();
          return async () => {
            pgCpu = (db.cpuTicks() - c0) / 100 / ((performance.now() - t0) / 1000);
            return watcher.endWindow();
          };
        };
        const m = await signWindow(ctx, name, { dir, jwtKey: platform.jwtKey, ...roots, daemons, connections: CONNECTIONS, during });
        // Commits and WAL flushes: counted once the daemons' sessions have ended (postgres.mjs).
        for (const d of daemons) await d.stop();
        const totals = watcher ? await watcher.totals() : null;
        if (m.problem) return { status: "failed", reason: m.problem, figures: {} };
        const figures = { ...signFigures(prefix, m), [`${prefix}_pg_cores`]: round(pgCpu, 2) };
        const waits = m.during.waits.slice(0, 4).map(([k, share]) => `${k} ${Math.round(share * 100)} %`).join(", ");
        const perReplica = replicas > 1 ? `, per replica ${m.issuedBy.join(" + ")}` : "";
        const perSync = totals && totals.walSyncs > 0 ? `, ${round(totals.commits / totals.walSyncs, 1)} commits per WAL flush` : "";
        return {
          status: "ok",
          figures,
          text:
            `${signText(m, replicas > 1 ? `${replicas} replicas'` : "daemon")}${perReplica}; PostgreSQL ${db.version}, fsync on, CPU ${round(pgCpu, 2)} cores; ` +
            `busy sessions ${round(m.during.busyPerSample, 1)} on average: ${waits}; ${totals?.commits} commits, ${totals?.walSyncs} WAL flushes${perSync}`,
        };
      } finally {
        await watcher?.close();
        for (const d of daemons) await d.stop();
        await db.stop();
      }
    },
    inRunRatios: [{ key: `${prefix}_vs_sqlite`, ours: `${prefix}_per_s`, base: "sign_per_s", label: "of sign_16" }],
  };
}

export const signPg1 = signPgJob({ name: "sign_pg_1", replicas: 1, prefix: "sign_pg_1" });
export const signPg2 = signPgJob({ name: "sign_pg_2", replicas: 2, prefix: "sign_pg_2" });
