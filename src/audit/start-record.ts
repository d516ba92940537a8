import { createHash } from "node:crypto";
import type { FleetcaConfig } from "../config/schema.js";
import type { AuditFields } from "./audit-entry.js";
import { spkiSha256 } from "./tree-head.js";

/**
 * What a start puts in the issuance log: each key the process unwrapped (its name, role and
 * public key hash) and the configuration's hash, flagged when it differs from the last start's,
 * so "who changed what, when" has an answer even for changes made by editing a file.
 */
export function recordStart(log: { append(fields: AuditFields, at: Date): number; lastEntryOfKind(kind: string): Buffer | null }, config: FleetcaConfig, at: Date, keys: Array<{ key: string; role: string; spki: Uint8Array }>): void {
  const sha256 = createHash("sha256").update(JSON.stringify(config)).digest("hex");
  const previous = log.lastEntryOfKind("config_seen");
  const changed = previous !== null && (JSON.parse(previous.toString("utf8")) as { sha256?: string }).sha256 !== sha256;
  log.append({ kind: "config_seen", sha256, provisioners: config.provisioners.map((p) => p.name), changed }, at);
  for (const k of keys) log.append({ kind: "key_loaded", key: k.key, role: k.role, spki_sha256: spkiSha256(k.spki) }, at);
}
