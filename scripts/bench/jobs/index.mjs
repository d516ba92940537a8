/**
 * Every job, in run order. A job is one module exporting
 *   { name, keys, usesFleet?, run(ctx) → {status: "ok"|"failed"|"n/a", reason?, figures, text},
 *     peer?: {name, run(ctx)}, ratios?: [{key, ours, peer, target}], target?(figures) → text }
 * `keys` are the JSON-line keys it fills (null when it did not run). `target` words an absolute
 * target (no peer) for the table's "ratio (target)" column, e.g. renew_storm's p99 < 1 s.
 * `inRunRatios: [{key, ours, base, label}]`: ours / base where base is another job's figure of the
 * same run (sign_pg_* over sign_16's sign_per_s), in the same column. To add one, write
 * jobs/<name>.mjs and list it here.
 * The fleet jobs come first so their daemon can be stopped before the seeded, heavier ones; the
 * issuance jobs (issue 12) each start their own daemon (sign_pg_*: their own PostgreSQL too,
 * after sign_16, whose figure of the same run they are divided by); rss last, so its peak covers everything before it.
 */
import ocspCached from "./ocsp-cached.mjs";
import ocspNonce from "./ocsp-nonce.mjs";
import ocspPresign from "./ocsp-presign.mjs";
import ocspDuringCrl from "./ocsp-during-crl.mjs";
import crl100k from "./crl-100k.mjs";
import crl1m from "./crl-1m.mjs";
import sigFloor from "./sig-floor.mjs";
import { sign16, sign64 } from "./sign.mjs";
import { signPg1, signPg2 } from "./sign-pg.mjs";
import renew from "./renew.mjs";
import renewStorm from "./renew-storm.mjs";
import rss from "./rss.mjs";

export const JOBS = [ocspCached, ocspNonce, ocspDuringCrl, ocspPresign, crl100k, crl1m, sigFloor, sign16, sign64, signPg1, signPg2, renew, renewStorm, rss];
