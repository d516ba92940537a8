import type { ManualClock } from "../../src/core/clock.js";
import { loadConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/log/logger.js";
import { startDaemon, type Daemon, type DaemonOptions } from "../../src/cli/daemon.js";
import type { CaWorkspace } from "./fleetca-process.js";

/**
 * The daemon's real wiring inside the test process, with an injected clock (DESIGN habit 11:
 * freeze time, don't sleep): real listeners on port 0, the real SQLite file, real TLS.
 */
export async function startInProcess(
  ws: CaWorkspace,
  clock: ManualClock,
  extra: Pick<DaemonOptions, "wrapSigner"> = {},
): Promise<{ daemon: Daemon; logs: string[] }> {
  const logs: string[] = [];
  const log = createLogger({ level: "info", format: "logfmt", write: (l) => void logs.push(l) });
  const { config } = loadConfig(ws.configPath, {});
  const daemon = await startDaemon(config, { passphrase: undefined, clock, log, tickMs: 0, ...extra });
  return { daemon, logs };
}
