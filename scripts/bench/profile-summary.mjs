#!/usr/bin/env node
/**
 * Summarises a V8 .cpuprofile (node --cpu-prof) so a profile can be quoted and re-derived:
 *
 *   node scripts/bench/profile-summary.mjs PROFILE.cpuprofile [--window W.window.json | --from MS --to MS] [--top N] [--callers FN] [--json]
 *
 * Prints, over the samples inside the window (default: the whole profile):
 *   1. the split of the main thread's time: idle vs busy, and busy time by issuance stage
 *      (JWT verification, CSR parse/verify, TBS build, lint, sign, re-parse, SQLite, express/HTTP,
 *      TLS/streams, logging, GC, …): each sample goes to the FIRST stage in STAGES whose rule
 *      matches any frame of its stack, so the stages add up to the busy time;
 *   2. self time by function (top N);
 *   3. self time by file / package (node_modules package, fleetca dist file, node: module);
 *   4. with --callers FN: the self time of functions named FN split by the nearest fleetca frame
 *      on their stack (who calls, e.g., createPublicKey).
 *
 * Only the main thread is sampled: work on libuv's thread pool (the async ECDSA signature of the
 * soft signer, WebCrypto's verification of the JWT signature, scrypt) and V8's helper threads
 * does not appear. The bench job prints the daemon's CPU in cores over the same window; cores
 * minus the main thread's busy share is roughly what those threads used.
 *
 * Window files are written by the issuance jobs under `npm run bench -- --cpu-prof DIR`:
 * {job, pid, fromUs, toUs} in CLOCK_MONOTONIC microseconds, the clock of the profile's own
 * timestamps on Linux, so the cut is exact (fromMs/toMs since spawn are kept for reading).
 */
import { readFileSync } from "node:fs";

/** Ordered: the first rule that matches a sample's stack names its stage. */
const STAGES = [
  { name: "JWT verification (jose, provisioner)", rule: (s) => s.some((f) => f.pkg === "jose" || f.file.startsWith("attestation/")) },
  { name: "CSR parse + verify (subject key import)", rule: (s) => s.some((f) => ["verifyCsr", "verifyCsrOffThread", "decodeCsrPem", "subjectKeyOf"].includes(f.fn) && f.file === "x509/csr.js") },
  { name: "mTLS client authentication (renew)", rule: (s) => s.some((f) => f.fn === "authenticate" && f.file === "registration/client-authentication.js") },
  { name: "re-parse of the signed certificate", rule: (s) => s.some((f) => f.fn === "parseCertificateDer") && s.some((f) => f.fn === "issueLeaf") },
  { name: "renew: parse of the presented cert (its SPKI)", rule: (s) => s.some((f) => f.fn === "parseCertificateDer") && s.some((f) => f.fn === "renew") },
  {
    name: "TBS build (template splice, or profile objects + serialize)",
    rule: (s) => s.some((f) => ["leafTbs", "serializeTbs", "keyIdentifier"].includes(f.fn) || f.file === "x509/leaf-template.js"),
  },
  { name: "sign (dispatch) + verify after sign", rule: (s) => s.some((f) => f.fn === "signTbs" || f.fn === "verifySignature" || f.file === "signing/soft-keystore.js") },
  {
    name: "lint (TBS walk or re-parse, lintLeaf, match check)",
    rule: (s) => s.some((f) => ["issueLeaf", "lintLeaf", "describeTbs", "walkTbs", "issuedMatchesRequest", "#issueChecked"].includes(f.fn)),
  },
  { name: "SQLite (token check, commit + fsync)", rule: (s) => s.some((f) => f.pkg === "better-sqlite3" || f.file.startsWith("storage/")) },
  { name: "logging (pino)", rule: (s) => s.some((f) => ["pino", "sonic-boom", "thread-stream", "fast-redact", "pino-std-serializers", "quick-format-unescaped"].includes(f.pkg)) },
  { name: "response (PEM, chain, JSON)", rule: (s) => s.some((f) => ["#response", "toPem", "chainPem", "recordOf"].includes(f.fn)) },
  { name: "RA other (body, policy, SANs)", rule: (s) => s.some((f) => f.file.startsWith("registration/") || f.file.startsWith("core/") || f.file.startsWith("x509/")) },
  {
    name: "express / body parsing / HTTP",
    rule: (s) => s.some((f) => HTTP_PKGS.has(f.pkg) || f.file.startsWith("api/") || /^node:(_http_|internal\/http|http)/.test(f.url)),
  },
  { name: "TLS / net / streams", rule: (s) => s.some((f) => /^node:(_tls|tls|internal\/tls|net|internal\/stream|stream|internal\/streams)/.test(f.url) || /TLSWrap|TLSSocket/.test(f.fn)) },
  { name: "(garbage collector)", rule: (s) => s.at(-1)?.fn === "(garbage collector)" },
  { name: "(program): V8/native outside JS", rule: (s) => s.at(-1)?.fn === "(program)" },
  { name: "other", rule: () => true },
];
const HTTP_PKGS = new Set([
  "express", "router", "body-parser", "raw-body", "iconv-lite", "bytes", "content-type", "type-is", "mime-types", "on-finished", "finalhandler",
  "send", "depd", "debug", "http-errors", "statuses", "path-to-regexp", "qs", "accepts", "negotiator", "vary", "parseurl", "encodeurl",
  "escape-html", "content-disposition", "cookie", "fresh", "range-parser", "etag", "merge-descriptors", "media-typer", "safer-buffer", "unpipe",
]);

function main() {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith("--") && !isValueOf(args, a));
  if (!file) {
    console.error("usage: profile-summary.mjs PROFILE.cpuprofile [--window W.window.json | --from MS --to MS] [--top N] [--callers FN] [--json]");
    process.exit(2);
  }
  const opt = (k) => (args.includes(k) ? args[args.indexOf(k) + 1] : undefined);
  const top = Number(opt("--top") ?? 25);
  const prof = JSON.parse(readFileSync(file, "utf8"));
  let from = prof.startTime;
  let to = prof.endTime;
  let windowNote = "whole profile";
  if (opt("--window")) {
    const w = JSON.parse(readFileSync(opt("--window"), "utf8"));
    if (w.fromUs >= prof.startTime && w.toUs <= prof.endTime + 1e6) {
      [from, to] = [w.fromUs, w.toUs];
      windowNote = `${w.job} window, ${((to - from) / 1e6).toFixed(1)} s (${((from - prof.startTime) / 1e3).toFixed(0)}–${((to - prof.startTime) / 1e3).toFixed(0)} ms into the profile)`;
    } else {
      throw new Error(`window ${opt("--window")} is not inside this profile (pid ${w.pid}?)`);
    }
  } else if (opt("--from") || opt("--to")) {
    from = prof.startTime + Number(opt("--from") ?? 0) * 1000;
    to = opt("--to") ? prof.startTime + Number(opt("--to")) * 1000 : prof.endTime;
    windowNote = `${opt("--from") ?? 0}–${opt("--to") ?? "end"} ms into the profile`;
  }
  const s = summarise(prof, from, to, opt("--callers"));
  if (args.includes("--json")) {
    console.log(JSON.stringify(s));
    return;
  }
  const pct = (us) => `${((100 * us) / s.busyUs).toFixed(1)} %`;
  const ms = (us) => `${(us / 1000).toFixed(0)} ms`;
  console.log(`${file}: ${windowNote}`);
  console.log(`main thread: ${ms(s.totalUs)} sampled, idle ${ms(s.idleUs)} (${((100 * s.idleUs) / s.totalUs).toFixed(1)} %), busy ${ms(s.busyUs)}; percentages below are of busy time`);
  console.log("");
  table("stage (first matching rule wins)", s.stages, top, pct, ms);
  table("self time by function", s.functions, top, pct, ms);
  table("self time by file / package", s.files, top, pct, ms);
  if (s.callers) table(`self time of ${opt("--callers")} by nearest fleetca caller`, s.callers, top, pct, ms);
}

function isValueOf(args, a) {
  const i = args.indexOf(a);
  return i > 0 && ["--window", "--from", "--to", "--top"].includes(args[i - 1]);
}

function table(title, rows, top, pct, ms) {
  const shown = rows.slice(0, top);
  const w = Math.max(title.length, ...shown.map((r) => r.name.length));
  console.log(`| ${title.padEnd(w)} | busy % | self ms |`);
  console.log(`|${"-".repeat(w + 2)}|--------|---------|`);
  for (const r of shown) console.log(`| ${r.name.padEnd(w)} | ${pct(r.us).padStart(6)} | ${ms(r.us).padStart(7)} |`);
  if (rows.length > top) console.log(`(${rows.length - top} more)`);
  console.log("");
}

export function summarise(prof, from, to, callersOf) {
  const byId = new Map();
  for (const n of prof.nodes) byId.set(n.id, n);
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const frameOf = new Map(); // id → decoded frame
  const frame = (id) => {
    let f = frameOf.get(id);
    if (!f) {
      const cf = byId.get(id).callFrame;
      f = describe(cf);
      frameOf.set(id, f);
    }
    return f;
  };
  const stackCache = new Map();
  const stackOf = (id) => {
    let st = stackCache.get(id);
    if (!st) {
      st = [];
      for (let cur = id; cur !== undefined; cur = parent.get(cur)) st.push(frame(cur));
      st.reverse();
      stackCache.set(id, st);
    }
    return st;
  };
  const stageOfId = new Map();
  const add = (m, k, us) => m.set(k, (m.get(k) ?? 0) + us);
  const fns = new Map();
  const files = new Map();
  const stages = new Map();
  const callers = new Map();
  let t = prof.startTime;
  let totalUs = 0;
  let idleUs = 0;
  const n = prof.samples.length;
  const times = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    t += prof.timeDeltas[i];
    times[i] = t;
  }
  for (let i = 0; i < n; i++) {
    const ts = times[i];
    if (ts < from || ts > to) continue;
    const us = Math.max(0, (i + 1 < n ? times[i + 1] : prof.endTime) - ts);
    const id = prof.samples[i];
    const leaf = frame(id);
    totalUs += us;
    if (leaf.fn === "(idle)") {
      idleUs += us;
      continue;
    }
    add(fns, leaf.label, us);
    if (callersOf && leaf.fn === callersOf) {
      const st = stackOf(id);
      const c = st.findLast((f) => f.file !== "");
      add(callers, c ? `${c.fn} ${c.file}` : "(no fleetca frame)", us);
    }
    add(files, leaf.group, us);
    let stage = stageOfId.get(id);
    if (stage === undefined) {
      const st = stackOf(id);
      stage = STAGES.find((r) => r.rule(st)).name;
      stageOfId.set(id, stage);
    }
    add(stages, stage, us);
  }
  const sorted = (m) => [...m].map(([name, us]) => ({ name, us })).sort((a, b) => b.us - a.us);
  return { totalUs, idleUs, busyUs: totalUs - idleUs, stages: sorted(stages), functions: sorted(fns), files: sorted(files), ...(callersOf && { callers: sorted(callers) }) };
}

/** A call frame as the summary needs it: function, package, fleetca file, a label and a group. */
function describe(cf) {
  const fn = cf.functionName || "(anonymous)";
  const url = cf.url || "";
  let pkg = "";
  let file = "";
  let group;
  const nm = url.lastIndexOf("/node_modules/");
  const dist = url.indexOf("/dist/");
  if (nm >= 0) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    pkg = rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0];
    group = `npm ${pkg}`;
  } else if (dist >= 0 && url.startsWith("file://")) {
    file = url.slice(dist + "/dist/".length);
    group = `fleetca ${file}`;
  } else if (url.startsWith("node:")) {
    group = `node:${url.slice(5).replace(/^internal\//, "").split("/")[0]}`;
  } else if (url === "") {
    group = fn.startsWith("(") ? fn : "(native, no script)";
  } else {
    group = url.split("/").at(-1);
  }
  const where = url === "" ? "" : ` ${file || (pkg ? `${pkg}/${url.slice(url.lastIndexOf("/") + 1)}` : url.replace(/^.*\//, ""))}:${cf.lineNumber + 1}`;
  return { fn, url, pkg, file, group, label: `${fn}${where}` };
}

main();
