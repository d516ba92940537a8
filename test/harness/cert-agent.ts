import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { CaWorkspace } from "./fleetca-process.js";
import { REPO } from "./paths.js";
import { allPem } from "../../src/x509/pem.js";

export const AGENT_BIN = join(REPO, "dist", "cli", "cert-agent.js");

const execFileAsync = promisify(execFile);

export interface AgentRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real cert-agent bin; never throws on a non-zero exit. */
export async function runAgent(args: string[], timeoutMs = 30_000): Promise<AgentRun> {
  try {
    const r = await execFileAsync(process.execPath, [AGENT_BIN, ...args], { timeout: timeoutMs });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === "number" ? err.code : 1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

/** A free TCP port, so the public listener (and the OCSP URL baked into every cert) is known up front. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * A workspace whose public listener keeps its port across daemon restarts, so the OCSP URL in
 * certificates issued before a restart still reaches it. No publicUrl: it follows listen.public.
 */
export async function agentWorkspace(extraConfig = ""): Promise<CaWorkspace> {
  const ws = new CaWorkspace({ extraConfig });
  const port = await freePort();
  writeFileSync(ws.configPath, readFileSync(ws.configPath, "utf8").replace('public: "127.0.0.1:0"', `public: "127.0.0.1:${port}"`));
  return ws;
}

export async function rootFingerprint(publicUrl: string): Promise<string> {
  const pem = await (await fetch(`${publicUrl}/roots.pem`)).text();
  return createHash("sha256").update(allPem(pem, "CERTIFICATE")[0]!).digest("hex");
}


/**
 * A separate process that polls DIR/key.pem and DIR/cert.pem through the visible symlinks, as a
 * TLS server reloading its files would, and checks that the key matches the cert. Two opens are
 * two instants, so it brackets them with readlink(..data) (a seqlock): if ..data moved between
 * them the sample straddled a swap and is retried, exactly as a careful consumer of an
 * AtomicWriter directory does; if it did not move, the pair must match. A missing file or
 * a mismatched pair in a stable sample is a publication bug.
 */
const READER = `
import { readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { createPublicKey, X509Certificate } from "node:crypto";
const [dir, stopFile] = process.argv.slice(2);
const r = { samples: 0, consistent: 0, straddled: 0, mismatched: 0, missing: 0, versions: new Set(), errors: [] };
const exists = (p) => { try { readFileSync(p); return true; } catch { return false; } };
for (;;) {
  if (exists(stopFile)) break;
  let v1, key, cert, v2;
  try { v1 = readlinkSync(dir + "/..data"); } catch { continue; }
  try {
    key = readFileSync(dir + "/key.pem", "utf8");
    cert = readFileSync(dir + "/cert.pem", "utf8");
  } catch (e) { r.missing++; r.errors.push(String(e.code)); continue; }
  v2 = readlinkSync(dir + "/..data");
  r.samples++;
  if (v1 !== v2) { r.straddled++; continue; }
  if (!r.versions.has(v1)) { r.versions.add(v1); writeFileSync(stopFile + ".versions", String(r.versions.size)); }
  const a = createPublicKey(key).export({ type: "spki", format: "der" });
  const b = new X509Certificate(cert).publicKey.export({ type: "spki", format: "der" });
  if (a.equals(b)) r.consistent++; else r.mismatched++;
}
process.stdout.write(JSON.stringify({ ...r, versions: r.versions.size, errors: r.errors.slice(0, 5) }));
`;

export interface ReaderReport {
  samples: number;
  consistent: number;
  straddled: number;
  mismatched: number;
  missing: number;
  versions: number;
  errors: string[];
}

/**
 * Starts the reader on `dir` (which must already hold a published set); `stop()` returns its
 * report. `versionsSeen()` is how many sets it has read whole so far: a test that saw a new set
 * itself waits on it before stopping the reader, which may not have been on a core since.
 */
export function startReader(dir: string, scratch: string): { stop: () => Promise<ReaderReport>; versionsSeen: () => number } {
  const script = join(scratch, "reader.mjs");
  const stopFile = join(scratch, `reader-stop-${Date.now()}`);
  writeFileSync(script, READER);
  const child = execFile(process.execPath, [script, dir, stopFile], { maxBuffer: 1 << 20 });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const done = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  return {
    versionsSeen: () => {
      try {
        return Number(readFileSync(`${stopFile}.versions`, "utf8"));
      } catch {
        return 0;
      }
    },
    stop: async () => {
      writeFileSync(stopFile, "");
      await done;
      return JSON.parse(out) as ReaderReport;
    },
  };
}
