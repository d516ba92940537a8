import { writeFileSync, createWriteStream } from "node:fs";
import { join } from "node:path";
import { makeTempDir } from "../cleanup.mjs";
import { runBounded, lastLine } from "../processes.mjs";
import { opensslTime } from "./peer-ca.mjs";
import { round } from "../report.mjs";

/**
 * Peer of crl_100k: `openssl ca -gencrl` over an index.txt of `count` revoked (R) entries, the
 * same count and reason mix as fleetca's seeded rows, signed with the peer CA's P-256 key. Timed
 * with process.hrtime around the spawn (so it includes openssl's start and its reading of
 * index.txt, as fleetca's figure includes reading its rows).
 */
export default {
  name: "openssl ca -gencrl",
  async run(ctx, { count }) {
    const ca = await ctx.peerCa();
    const dir = makeTempDir("peer-gencrl");
    const expiry = opensslTime(new Date(Date.now() + 7 * 86_400_000));
    const reasons = ["", ",keyCompromise", ",superseded"];
    const now = Date.now();
    const out = createWriteStream(join(dir, "index.txt"));
    for (let i = 0; i < count; i++) {
      const serial = ("5" + i.toString(16).padStart(31, "0")).toUpperCase();
      const revoked = opensslTime(new Date(now - 60_000 - (i % 86_400) * 1000)) + reasons[i % 3];
      out.write(`R\t${expiry}\t${revoked}\t${serial}\tunknown\t/CN=seed-${i}.internal\n`);
    }
    await new Promise((r, j) => out.end((e) => (e ? j(e) : r())));
    writeFileSync(join(dir, "crlnumber"), "1000\n");
    writeFileSync(join(dir, "ca.cnf"), [
      "[ ca ]", "default_ca = bench", "[ bench ]", `database = ${join(dir, "index.txt")}`, `crlnumber = ${join(dir, "crlnumber")}`,
      `certificate = ${ca.caPem}`, `private_key = ${ca.caKey}`, "default_md = sha256", "default_crl_days = 1", "unique_subject = no",
      "crl_extensions = crl_ext", "[ crl_ext ]", "authorityKeyIdentifier = keyid:always", "",
    ].join("\n"));
    const crl = join(dir, "crl.pem");
    const r = await runBounded("openssl", ["ca", "-config", join(dir, "ca.cnf"), "-gencrl", "-out", crl], { timeoutMs: 300_000 });
    if (r.timedOut || r.code !== 0) return { status: "failed", reason: r.timedOut ? "timed out" : lastLine(r.stderr), figures: {} };
    const s = r.ms / 1000;
    // Same check as ours: the CRL lists every entry.
    const c = await runBounded("sh", ["-c", `openssl crl -in '${crl}' -noout -text | grep -c 'Serial Number'`], { timeoutMs: 120_000 });
    const listed = Number(c.stdout.trim());
    if (listed !== count) return { status: "failed", reason: `openssl CRL lists ${listed} of ${count}`, figures: {} };
    return { status: "ok", figures: { peer_crl_100k_s: round(s, 3) }, text: `${round(s, 3)} s (${count} entries)` };
  },
};
