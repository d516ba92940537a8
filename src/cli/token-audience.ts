import { OperatorError } from "../core/errors.js";
import type { FleetcaConfig } from "../config/schema.js";
import { liveServeState } from "./serve-state.js";
import { splitHostPort, urlHost } from "../api/listener.js";

/**
 * The `aud` a bootstrap token is minted for: {apiUrl}/v1/sign. apiUrl comes from config, else
 * from a running daemon's serve.json (needed when listen.api uses port 0), else from listen.api.
 */
export function signAudience(config: FleetcaConfig): string {
  if (config.apiUrl) return `${config.apiUrl}/v1/sign`;
  const running = liveServeState(config.dataDir);
  if (running) return `${running.apiUrl}/v1/sign`;
  const [host, port] = splitHostPort(config.listen.api);
  if (port === 0) {
    throw new OperatorError("listen.api uses port 0 and no daemon is running: set apiUrl in the config or pass --aud");
  }
  return `https://${urlHost(host)}:${port}/v1/sign`;
}
