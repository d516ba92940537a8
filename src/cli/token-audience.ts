import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { OperatorError } from "../core/errors.js";
import type { FleetcaConfig } from "../config/schema.js";
import { SERVE_STATE_FILE } from "./data-dir.js";
import { splitHostPort, urlHost } from "../api/listener.js";

/**
 * The `aud` a bootstrap token is minted for: {apiUrl}/v1/sign. apiUrl comes from config, else
 * from a running daemon's serve.json (needed when listen.api uses port 0), else from listen.api.
 */
export function signAudience(config: FleetcaConfig): string {
  if (config.apiUrl) return `${config.apiUrl}/v1/sign`;
  const running = runningApiUrl(config.dataDir);
  if (running) return `${running}/v1/sign`;
  const [host, port] = splitHostPort(config.listen.api);
  if (port === 0) {
    throw new OperatorError("listen.api uses port 0 and no daemon is running: set apiUrl in the config or pass --aud");
  }
  return `https://${urlHost(host)}:${port}/v1/sign`;
}

function runningApiUrl(dataDir: string): string | null {
  const path = join(dataDir, SERVE_STATE_FILE);
  if (!existsSync(path)) return null;
  try {
    const state = JSON.parse(readFileSync(path, "utf8")) as { pid?: unknown; apiUrl?: unknown };
    if (typeof state.pid !== "number" || typeof state.apiUrl !== "string") return null;
    process.kill(state.pid, 0); // throws when that daemon is gone (a stale file after a crash)
    return state.apiUrl;
  } catch {
    return null;
  }
}
