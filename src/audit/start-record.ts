import { createHash } from "node:crypto";
import type { FleetcaConfig } from "../config/schema.js";
import type { AuditLogStore } from "../storage/ports.js";
import { spkiSha256 } from "./tree-head.js";

/**
 * What a start puts in the issuance log: each key the process unwrapped (its name, role and
 * public key hash) and the configuration's hash, flagged when it differs from the last start's,
 * so "who changed what, when" has an answer even for changes made by editing a file.
 */
export async function recordStart(
  log: Pick<AuditLogStore, "append" | "lastEntryOfKind">,
  config: FleetcaConfig,
  at: Date,
  keys: Array<{ key: string; role: string; spki: Uint8Array }>,
): Promise<void> {
  const sha256 = createHash("sha256").update(JSON.stringify(config)).digest("hex");
  const previous = await log.lastEntryOfKind("config_seen");
  const changed = previous !== null && (JSON.parse(previous.toString("utf8")) as { sha256?: string }).sha256 !== sha256;
  // One after the other, in this order: the log's order is the start's story.
  await log.append({ kind: "config_seen", sha256, provisioners: config.provisioners.map((p) => p.name), changed }, at);
  for (const k of keys) await log.append({ kind: "key_loaded", key: k.key, role: k.role, spki_sha256: spkiSha256(k.spki) }, at);
}
