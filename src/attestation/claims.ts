/**
 * Looks up a claim by a dotted path. Claim names may themselves contain dots (Kubernetes puts
 * its claims under "kubernetes.io"), so at each level the longest key that matches wins:
 * "kubernetes.io.serviceaccount.name" finds payload["kubernetes.io"]["serviceaccount"]["name"].
 */
export function claimAt(payload: unknown, path: string): unknown {
  return walk(payload, path.split("."));
}

function walk(node: unknown, segments: string[]): unknown {
  if (segments.length === 0) return node;
  if (typeof node !== "object" || node === null || Array.isArray(node)) return undefined;
  for (let take = segments.length; take >= 1; take--) {
    const key = segments.slice(0, take).join(".");
    if (Object.prototype.hasOwnProperty.call(node, key)) {
      const found = walk((node as Record<string, unknown>)[key], segments.slice(take));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** A claim as template text: strings and integers only; anything else is not a name part. */
export function claimText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return String(value);
  return undefined;
}
