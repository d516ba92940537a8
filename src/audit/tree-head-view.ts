import { treeHeadJson, type TreeHeadJson } from "./tree-head.js";

/** The stored heads' reader (storage/sqlite/sqlite-audit-log.ts). */
export interface LatestTreeHead {
  latestTreeHead(): { treeSize: number; rootHash: Uint8Array; timestamp: number; keyName: string; keySpki: Uint8Array; signature: Uint8Array } | null;
}

/** The latest head as served: read per request (a small primary-key read), so every process serving it agrees. */
export function latestTreeHeadJson(store: LatestTreeHead): TreeHeadJson | null {
  const h = store.latestTreeHead();
  return h ? treeHeadJson(h) : null;
}
