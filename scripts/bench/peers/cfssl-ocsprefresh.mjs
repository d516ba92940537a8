import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { makeTempDir } from "../cleanup.mjs";
import { runBounded, lastLine } from "../processes.mjs";
import { round } from "../report.mjs";

/**
 * Peer of ocsp_presign: `cfssl ocsprefresh`, which signs an OCSP response for every unexpired
 * certificate of its certdb and upserts it into ocsp_responses. Its certdb is SQLite with this
 * cfssl's (Debian golang-cfssl, 2016) schema; every row carries the same real leaf PEM (it
 * signs from the PEM), so each refresh is one signature + one upsert, as for distinct certs.
 * It commits every upsert separately (an fsync each, ~100/s on this disk), so it runs on a
 * smaller N than ours; the figure is a rate, answers/s, which does not depend on N.
 */
export default {
  name: "cfssl ocsprefresh",
  async run(ctx) {
    const n = ctx.opts.quick ? 500 : 2_000;
    const ca = await ctx.peerCa();
    const dir = makeTempDir("peer-cfssl-db");
    const dbPath = join(dir, "certdb.sqlite");
    const db = new Database(dbPath);
    try {
      db.exec(`
CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob, status blob NOT NULL,
  reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL, PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier));`);
      const pem = readFileSync(ca.leafPem, "utf8");
      const expiry = new Date(Date.now() + 7 * 86_400_000).toISOString().replace("T", " ").slice(0, 19);
      // This cfssl scans ca_label and revoked_at into non-nullable Go types: '' and epoch, not NULL.
      const ins = db.prepare("INSERT INTO certificates VALUES (?, '', '', 'good', 0, ?, '1970-01-01 00:00:00', ?)");
      db.transaction(() => {
        for (let i = 0; i < n; i++) ins.run(String(i + 1), expiry, pem);
      })();
    } finally {
      db.close();
    }
    const cfg = join(dir, "db.json");
    writeFileSync(cfg, JSON.stringify({ driver: "sqlite3", data_source: dbPath }));
    const r = await runBounded("cfssl", ["ocsprefresh", "-db-config", cfg, "-ca", ca.caPem, "-responder", ca.caPem, "-responder-key", ca.caKey, "-loglevel", "3"], { cwd: dir, timeoutMs: 180_000 });
    if (r.timedOut || r.code !== 0) return { status: "failed", reason: r.timedOut ? "timed out after 180 s" : lastLine(r.stderr || r.stdout), figures: {} };
    const check = new Database(dbPath, { readonly: true });
    const rows = check.prepare("SELECT count(*) AS c FROM ocsp_responses").get().c;
    check.close();
    if (rows < 1) return { status: "failed", reason: "ocsp_responses is empty after ocsprefresh", figures: {} };
    const perS = n / (r.ms / 1000);
    return { status: "ok", figures: { peer_ocsp_presign_per_s: round(perS) }, text: `${round(perS)} /s (${n} certs in ${round(r.ms / 1000, 1)} s)` };
  },
};
