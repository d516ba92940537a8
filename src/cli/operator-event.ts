import { systemClock } from "../core/clock.js";
import type { EventFields } from "../audit/audit-entry.js";
import { openDatabase } from "./data-dir.js";

/**
 * Puts an operator action (a rotation, the kill switch) into the issuance log, from the command
 * that did it: the log says what changed, when, even for actions taken with the daemon stopped.
 * Details are names, ids and counts, never a secret.
 */
export function recordOperatorEvent(dataDir: string, event: string, details: EventFields["details"]): void {
  const store = openDatabase(dataDir);
  try {
    store.audit.append({ kind: "event", event, details }, systemClock.now());
  } finally {
    store.close();
  }
}
