import { spawnSync } from "node:child_process";

/** Debian package that provides each binary the harness needs. */
const PACKAGES = { wrk: "wrk", openssl: "openssl", cfssl: "golang-cfssl", unshare: "util-linux", ip: "iproute2" };

function have(bin) {
  return spawnSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" }).status === 0;
}

/**
 * Installs missing tools from Debian (we run as root on these machines). Prints what it
 * installs, so a run's log says which native tools it brought in.
 */
export function ensureTools(bins) {
  const missing = bins.filter((b) => !have(b));
  if (missing.length === 0) return;
  aptInstall([...new Set(missing.map((b) => PACKAGES[b] ?? b))], missing);
  const still = missing.filter((b) => !have(b));
  if (still.length) throw new Error(`still missing after install: ${still.join(", ")}`);
}

/** `apt-get install` of Debian packages, saying which and why; throws when apt-get fails. */
export function aptInstall(pkgs, missing) {
  console.log(`bench: installing ${pkgs.join(", ")} (missing: ${missing.join(", ")})`);
  const r = spawnSync("sh", ["-c", `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkgs.join(" ")}`], {
    stdio: "inherit",
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`apt-get install ${pkgs.join(" ")} failed (exit ${r.status})`);
}
