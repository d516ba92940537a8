#!/usr/bin/env node
/**
 * cert-agent: keeps a short-lived certificate fresh on a host (SPEC "cert-agent files").
 * Imports only agent/, core/ and x509/ (DESIGN: the agent never imports server code), so it can
 * ship on hosts that never run the CA.
 */
import { parseArgs } from "node:util";
import { existsSync, readFileSync } from "node:fs";
import { packageVersion } from "../core/package-version.js";
import { systemClock } from "../core/clock.js";
import { Agent, type LogFn } from "../agent/agent.js";
import { AgentError } from "../agent/errors.js";
import { realSleep } from "../agent/schedule.js";
import { parseFingerprint } from "../agent/trust.js";
import { AgentMetrics, parseListenAddress, type MetricsListener } from "../agent/agent-metrics.js";

const USAGE =
  "usage: cert-agent --ca URL --root-fingerprint SHA256HEX --token-file F --out DIR --san S [--san S…] [--reload-cmd CMD] [--bundle] [--metrics-listen ADDR] [--once]";

const HELP = `${USAGE}

Keeps a short-lived certificate fresh in --out: key.pem, cert.pem, chain.pem, fullchain.pem,
ca.pem, ocsp.der, swapped as one set. Enrolls with the token in --token-file, then renews over
mTLS at about 2/3 of the lifetime, backing off while the CA is unreachable. A token the CA refuses
is never resent: the agent waits for new content in --token-file. A revoked certificate is
replaced with the token at once.

  --ca URL                 the CA's API listener, https://
  --root-fingerprint HEX   SHA-256 of the root certificate (colons allowed)
  --token-file F           one-time bootstrap token or platform identity token (re-read each use)
  --out DIR                where the set is published
  --san S                  a SAN to request (DNS name, IP address or URI); repeatable
  --reload-cmd CMD         run after each new set (e.g. reload nginx)
  --bundle                 also publish bundle.pem: key, leaf and intermediates in one 0600 file
  --metrics-listen ADDR    serve Prometheus metrics on http://ADDR/metrics (HOST:PORT, [v6]:PORT or
                           :PORT); bind it to loopback or a private interface
  --once                   obtain or renew once, then exit 0
  --version, --help

Signals: SIGHUP renews now; SIGTERM/SIGINT stop.

Examples:
  cert-agent --ca https://ca.internal:8443 --root-fingerprint 3f:a1:… --token-file /run/fleetca/token \\
    --out /etc/fleetca/web --san web-1.internal --reload-cmd "systemctl reload nginx"
  cert-agent --ca https://ca.internal:8443 --root-fingerprint 3fa1… --token-file /run/fleetca/token \\
    --out /tmp/once --san 10.0.0.7 --san spiffe://example.org/web --once
  cert-agent … --metrics-listen 127.0.0.1:9465    # certagent_cert_expiry_seconds and friends
  kill -HUP $(pidof cert-agent)    # renew now
`;


/** A usage mistake: one line and where to look (issue 16), as `fleetca` does; exit 2. */
const usageError = (message: string): string => `${message} (see cert-agent --help)`;

function fail(message: string, code = 1): never {
  process.stderr.write(`cert-agent: ${message.replace(/\s*\n\s*/g, " ")}\n`);
  process.exit(code);
}

/** logfmt-ish, one line per event, level first; values with spaces or quotes are quoted. */
const log: LogFn = (event, fields = {}, level = "info") => {
  const parts = [`level=${level}`, `ts=${new Date().toISOString()}`, `msg=${JSON.stringify(event)}`];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = String(v);
    parts.push(`${k}=${/[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s}`);
  }
  process.stdout.write(`${parts.join(" ")}\n`);
};

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        ca: { type: "string" },
        "root-fingerprint": { type: "string" },
        "token-file": { type: "string" },
        out: { type: "string" },
        san: { type: "string", multiple: true },
        "reload-cmd": { type: "string" },
        "metrics-listen": { type: "string" },
        bundle: { type: "boolean", default: false },
        once: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
        version: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    fail(usageError((e as Error).message), 2);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (values.version) {
    process.stdout.write(`cert-agent ${packageVersion()}\n`);
    return;
  }
  for (const k of ["ca", "root-fingerprint", "token-file", "out"] as const) if (!values[k]) fail(usageError(`--${k} is required`), 2);
  if (!values.san?.length) fail(usageError("at least one --san is required"), 2);
  let caUrl: URL;
  try {
    caUrl = new URL(values.ca!);
  } catch {
    fail(`--ca must be the CA's API URL, e.g. https://ca.internal:8443 (got ${JSON.stringify(values.ca)})`, 2);
  }
  if (caUrl.protocol !== "https:") fail("--ca must be an https:// URL (the CA's API listener)", 2);
  let fingerprint: string;
  try {
    fingerprint = parseFingerprint(values["root-fingerprint"]!);
  } catch (e) {
    fail((e as Error).message, 2);
  }
  if (!existsSync(values["token-file"]!)) fail(`--token-file ${values["token-file"]} does not exist`, 2);
  if (values["metrics-listen"] !== undefined && values.once) fail("--metrics-listen has nothing to serve with --once (the run ends at once)", 2);
  let metrics: AgentMetrics | undefined;
  let metricsListener: MetricsListener | undefined;
  if (values["metrics-listen"] !== undefined) {
    try {
      parseListenAddress(values["metrics-listen"]);
    } catch (e) {
      fail((e as Error).message, 2);
    }
    metrics = new AgentMetrics(systemClock);
    metricsListener = await metrics.listen(values["metrics-listen"]);
    log("metrics listening", { url: `http://${metricsListener.address}/metrics` });
  }

  const agent = new Agent({
    caUrl: caUrl.href.replace(/\/+$/, ""),
    fingerprint,
    tokenFile: values["token-file"]!,
    outDir: values.out!,
    sans: values.san,
    ...(values["reload-cmd"] !== undefined && { reloadCmd: values["reload-cmd"] }),
    clock: systemClock,
    sleep: realSleep,
    random: Math.random,
    log,
    ...(metrics && { metrics }),
    ...(values.bundle && { bundle: true }),
  });

  if (values.once) {
    // Already obtaining now: a SIGHUP must not kill a --once run halfway through a publication.
    process.on("SIGHUP", () => log("renewal requested", { signal: "SIGHUP", note: "--once is already renewing" }));
    await agent.runOnce();
    // The set it replaced (with its private key) goes after the readers' grace period.
    await agent.settled();
    return;
  }
  const stop = new AbortController();
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => {
      log("stopping", { signal: sig });
      stop.abort();
    });
  }
  // SIGHUP: renew now (the conventional "reload" signal; here the agent's one action).
  process.on("SIGHUP", () => {
    log("renewal requested", { signal: "SIGHUP" });
    agent.renewNow("SIGHUP");
  });
  try {
    await agent.run(stop.signal);
  } finally {
    await metricsListener?.close();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => fail(e instanceof AgentError ? e.message : `unexpected error: ${(e as Error)?.message ?? String(e)}`),
);
