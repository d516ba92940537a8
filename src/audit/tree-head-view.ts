import type { AuditLogStore } from "../storage/ports.js";
import { treeHeadJson, type TreeHeadJson } from "./tree-head.js";

/** The stored heads' reader. */
export type LatestTreeHead = Pick<AuditLogStore, "latestTreeHead">;

/** The latest head as served: read per request (a small primary-key read), so every process serving it agrees. */
export async function latestTreeHeadJson(store: LatestTreeHead): Promise<TreeHeadJson | null> {
  const h = await store.latestTreeHead();
  return h ? treeHeadJson(h) : null;
}
