import { systemClock } from "../core/clock.js";
import type { EventFields } from "../audit/audit-entry.js";
import type { CaStorage } from "../storage/ca-storage.js";
import { openDatabase } from "./data-dir.js";

/**
 * Puts an operator action (a rotation, the kill switch) into the issuance log, from the command
 * that did it: the log says what changed, when, even for actions taken with the daemon stopped.
 * Details are names, ids and counts, never a secret.
 */
export async function recordOperatorEvent(storage: CaStorage, event: string, details: EventFields["details"]): Promise<void> {
  await storage.audit.append({ kind: "event", event, details }, systemClock.now());
}

/** recordOperatorEvent on a SQLite data dir's database, for `fleetca rotate kek`, which opens no storage. */
export function recordOperatorEventInDataDir(dataDir: string, event: string, details: EventFields["details"]): void {
  const store = openDatabase(dataDir);
  try {
    store.audit.append({ kind: "event", event, details }, systemClock.now());
  } finally {
    store.close();
  }
}
