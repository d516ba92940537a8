import { spawn } from "node:child_process";

export interface ReloadResult {
  ok: boolean;
  detail: string;
}

/**
 * Runs the operator's reload command through /bin/sh -c (so it can be a pipeline, like
 * `nginx -s reload`) after a publication. Bounded by a timeout; a failure is reported to the
 * caller to log and is never fatal: the files are already published, and the next publication
 * runs it again.
 */
export function runReload(cmd: string, timeoutMs = 30_000): Promise<ReloadResult> {
  return new Promise((resolve) => {
    const child = spawn("/bin/sh", ["-c", cmd], { stdio: ["ignore", "inherit", "inherit"], timeout: timeoutMs, killSignal: "SIGKILL" });
    child.on("error", (e) => resolve({ ok: false, detail: e.message }));
    child.on("exit", (code, signal) => {
      if (code === 0) resolve({ ok: true, detail: "exit 0" });
      else if (signal) resolve({ ok: false, detail: `killed by ${signal}${signal === "SIGKILL" ? ` (timeout ${timeoutMs} ms)` : ""}` });
      else resolve({ ok: false, detail: `exit ${code}` });
    });
  });
}
