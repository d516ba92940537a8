import { execFileSync } from "node:child_process";
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
