import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SERVE_STATE_FILE } from "./data-dir.js";

/** What a running `fleetca serve` wrote to dataDir/serve.json: its pid and the URLs it bound. */
export interface ServeState {
  pid: number;
  apiUrl: string;
  publicUrl: string;
  startedAt: string;
}

/**
 * The daemon serving this dataDir, or null. serve.json is believed only while its pid is alive:
 * a daemon killed with SIGKILL leaves the file behind. EPERM means alive but another user's.
 */
export function liveServeState(dataDir: string): ServeState | null {
  let state: Partial<ServeState>;
  try {
    state = JSON.parse(readFileSync(join(dataDir, SERVE_STATE_FILE), "utf8")) as Partial<ServeState>;
  } catch {
    return null;
  }
  if (typeof state.pid !== "number" || typeof state.apiUrl !== "string" || typeof state.publicUrl !== "string") return null;
  try {
    process.kill(state.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return null;
  }
  return { pid: state.pid, apiUrl: state.apiUrl, publicUrl: state.publicUrl, startedAt: String(state.startedAt ?? "") };
}
