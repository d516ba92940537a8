import { systemClock } from "../core/clock.js";
import type { EventFields } from "../audit/audit-entry.js";
import type { CaStorage } from "../storage/ca-storage.js";

/**
 * Puts an operator action (a rotation, the kill switch) into the issuance log, from the command
 * that did it: the log says what changed, when, even for actions taken with the daemon stopped.
 * Details are names, ids and counts, never a secret.
 */
export async function recordOperatorEvent(storage: CaStorage, event: string, details: EventFields["details"]): Promise<void> {
  await storage.audit.append({ kind: "event", event, details }, systemClock.now());
}
