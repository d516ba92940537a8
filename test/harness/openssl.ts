import { execFileSync, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export type TestKeyType = "ec-p256" | "ec-p384" | "ed25519" | "rsa-2048" | "rsa-1024";

const NEWKEY: Record<TestKeyType, string[]> = {
  "ec-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
  "ec-p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
  ed25519: ["-newkey", "ed25519"],
  "rsa-2048": ["-newkey", "rsa:2048"],
  "rsa-1024": ["-newkey", "rsa:1024"],
};

export function openssl(args: string[], opts: { cwd?: string; input?: string } = {}): string {
  return execFileSync("openssl", args, { cwd: opts.cwd, input: opts.input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
}

/** What an openssl run said, stdout and stderr together, and how it exited. */
export interface OpensslRun {
  code: number | null;
  out: string;
}

/**
 * One openssl run with stdout and stderr together, never throwing on a non-zero exit: `openssl ocsp`
 * says "Response verify OK" and `openssl crl` "verify OK" on stderr, and a refusal is itself a result.
 */
export function opensslAll(args: string[]): OpensslRun {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/**
 * The same, without blocking: an openssl that talks to an in-process daemon needs this process's
 * event loop free to answer it.
 */
export function opensslAsync(args: string[]): Promise<OpensslRun> {
  return new Promise((resolve, reject) => {
    const child = spawn("openssl", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}

/** A fresh key and PKCS#10 request made by `openssl req`, as a host would make them. */
export function makeCsr(
  dir: string,
  name: string,
  opts: { cn?: string; sans?: string[]; keyType?: TestKeyType } = {},
): { keyPath: string; csrPath: string; csrPem: string } {
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  const args = ["req", "-new", ...NEWKEY[opts.keyType ?? "ec-p256"], "-nodes", "-keyout", keyPath, "-out", csrPath, "-subj", opts.cn ? `/CN=${opts.cn}` : "/"];
  if (opts.sans?.length) args.push("-addext", `subjectAltName=${opts.sans.join(",")}`);
  openssl(args);
  return { keyPath, csrPath, csrPem: readFileSync(csrPath, "utf8") };
}
