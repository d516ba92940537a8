import { CaError } from "./errors.js";

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses durations as SPEC.md writes them: "90s", "10m", "24h", also compound "1h30m" and "7d".
 * Returns milliseconds; throws CaError(bad_request) for anything else, so callers can surface it.
 */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (!/^(\d+(ms|s|m|h|d))+$/.test(s)) {
    throw new CaError("bad_request", `invalid duration "${text.slice(0, 40)}" (use e.g. 90s, 10m, 24h)`);
  }
  let total = 0;
  for (const m of s.matchAll(/(\d+)(ms|s|m|h|d)/g)) {
    total += Number(m[1]) * (UNIT_MS[m[2]!] ?? 0);
  }
  if (!Number.isSafeInteger(total) || total <= 0) {
    throw new CaError("bad_request", `duration "${text.slice(0, 40)}" must be positive`);
  }
  return total;
}

/** "6d23h", "23h59m", "5m", "<1m": the two largest units, for people reading an inventory. */
export function formatRemaining(ms: number): string {
  if (ms < 60_000) return "<1m";
  const units: Array<[string, number]> = [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000]];
  const parts: string[] = [];
  let rest = ms;
  for (const [name, size] of units) {
    const n = Math.floor(rest / size);
    if (n > 0 || parts.length > 0) parts.push(`${n}${name}`);
    rest -= n * size;
    if (parts.length === 2) break;
  }
  return parts.filter((p) => !p.startsWith("0")).join("") || "<1m";
}
