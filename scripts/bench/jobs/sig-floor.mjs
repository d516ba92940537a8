import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { runBounded, lastLine } from "../processes.mjs";
import { round } from "../report.mjs";

/** A leaf TBS is ~450 bytes: sign that much, so hashing costs what it costs in issuance. */
const MESSAGE_BYTES = 450;
const ROUNDS = 3;
const roundSeconds = (ctx) => (ctx.opts.quick ? 1 / 3 : 1);
/** Signatures in flight for the thread-pool figure (libuv's pool has 4 threads by default). */
const IN_FLIGHT = 32;

/**
 * The floor of issuance: raw ECDSA P-256 / SHA-256 signatures per second with node:crypto, in
 * this (the harness's) process, no daemon. `sig_floor_per_s` is the synchronous call on one
 * thread (one core); `sig_floor_pool_per_s` the callback form fleetca's soft signer uses, on
 * libuv's thread pool (up to both cores). A certificate costs one signature plus everything else:
 * sign_per_s / sig_floor_per_s is the share of a core's time a certificate spends signing.
 *
 * The machine is shared, so a figure here is the BEST of 3 rounds (1 s each; --quick 1/3 s), on
 * both sides: the best round is the one least disturbed by other sessions' processes.
 */
export default {
  name: "sig_floor",
  keys: ["sig_floor_per_s", "sig_floor_pool_per_s"],
  async run(ctx) {
    const seconds = roundSeconds(ctx);
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const msg = randomBytes(MESSAGE_BYTES);
    syncRate(privateKey, msg, 0.3); // warm-up: JIT, OpenSSL's lazy provider set-up
    const sync = [];
    const pool = [];
    for (let r = 0; r < ROUNDS; r++) {
      sync.push(syncRate(privateKey, msg, seconds));
      pool.push(await poolRate(privateKey, msg, seconds));
    }
    const perS = Math.max(...sync);
    const poolPerS = Math.max(...pool);
    return {
      status: "ok",
      figures: { sig_floor_per_s: round(perS), sig_floor_pool_per_s: round(poolPerS) },
      text: `${round(perS)} sig/s one thread (crypto.sign; rounds ${sync.map((x) => round(x)).join(", ")}), ${round(poolPerS)} sig/s thread pool`,
    };
  },
  peer: {
    name: "openssl speed",
    async run(ctx) {
      // openssl speed takes whole seconds only: 1 s rounds also in --quick.
      const rounds = [];
      for (let r = 0; r < ROUNDS; r++) {
        const o = await runBounded("openssl", ["speed", "-seconds", "1", "ecdsap256"], { timeoutMs: 60_000 });
        // "                              sign    verify    sign/s verify/s"
        // " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  43000.1  13000.2"
        const m = o.stdout.match(/ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/);
        if (!m) return { status: "failed", reason: `no ecdsap256 line from openssl speed (exit ${o.code}): ${lastLine(o.stderr || o.stdout)}`, figures: {} };
        rounds.push(Number(m[1]));
      }
      const perS = Math.max(...rounds);
      return { status: "ok", figures: { peer_sig_floor_per_s: round(perS) }, text: `${round(perS)} sign/s (openssl speed -seconds 1 ecdsap256, one core; rounds ${rounds.map((x) => round(x)).join(", ")})` };
    },
  },
  ratios: [{ key: "sig_floor_vs_openssl", ours: "sig_floor_per_s", peer: "peer_sig_floor_per_s", target: "floor" }],
};

function syncRate(key, msg, seconds) {
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let n = 0;
  let now = t0;
  while (now < end) {
    for (let i = 0; i < 50; i++) sign("sha256", msg, key);
    n += 50;
    now = performance.now();
  }
  return n / ((now - t0) / 1000);
}

function poolRate(key, msg, seconds) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let done = 0;
    let inFlight = 0;
    let stopped = false;
    const launch = () => {
      inFlight++;
      sign("sha256", msg, key, (err) => {
        inFlight--;
        if (err) {
          stopped = true;
          return reject(err);
        }
        done++;
        if (!stopped && performance.now() < end) launch();
        else if (inFlight === 0 && !stopped) {
          stopped = true;
          resolve(done / ((performance.now() - t0) / 1000));
        }
      });
    };
    for (let i = 0; i < IN_FLIGHT; i++) launch();
  });
}
