/**
 * Command-line flags of `npm run bench -- …`. Kept tiny and dependency-free on purpose: the
 * harness must run from a bare `npm ci` with nothing but Node built-ins.
 */
export function parseArgs(argv) {
  const opts = { quick: false, peers: false, json: false, only: null, cpuProf: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") opts.quick = true;
    else if (a === "--peers") opts.peers = true;
    else if (a === "--json") opts.json = true;
    else if (a === "--only") opts.only = new Set(splitList(argv[++i]));
    else if (a.startsWith("--only=")) opts.only = new Set(splitList(a.slice("--only=".length)));
    else if (a === "--cpu-prof") opts.cpuProf = requireValue(a, argv[++i]);
    else if (a.startsWith("--cpu-prof=")) opts.cpuProf = requireValue("--cpu-prof", a.slice("--cpu-prof=".length));
    else if (a === "--help" || a === "-h") opts.help = true;
    else throw new Error(`unknown flag ${a} (use --quick, --peers, --json, --only a,b, --cpu-prof DIR)`);
  }
  // wrk settings: 2 threads x 16 connections, as the docs promise; --quick only shortens.
  opts.wrk = { threads: 2, connections: 16, durationS: opts.quick ? 3 : 10 };
  return opts;
}

function requireValue(flag, v) {
  if (!v || v.startsWith("--")) throw new Error(`${flag} needs a directory (where every daemon writes its .cpuprofile)`);
  return v;
}

function splitList(s) {
  if (!s) throw new Error("--only needs a comma-separated list of job names");
  return s.split(",").map((x) => x.trim()).filter(Boolean);
}
