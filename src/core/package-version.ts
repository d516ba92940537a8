import { readFileSync } from "node:fs";

/** package.json's version, read at run time next to the built file (dist/core → ../../package.json). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}
