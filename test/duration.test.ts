import { describe, expect, it } from "vitest";
import { formatRemaining, parseDuration } from "../src/core/duration.js";

describe("durations", () => {
  it.each([
    ["90s", 90_000],
    ["10m", 600_000],
    ["24h", 86_400_000],
    ["7d", 604_800_000],
    ["1h30m", 5_400_000],
    ["250ms", 250],
  ])("parses %s", (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(["", "10", "10x", "-5m", "0s", "1.5h", "h", "5 m"])("refuses %j", (text) => {
    expect(() => parseDuration(text)).toThrow(/duration/);
  });

  it.each([
    [30_000, "<1m"],
    [5 * 60_000, "5m"],
    [(23 * 60 + 59) * 60_000, "23h59m"],
    [24 * 3_600_000, "1d"],
    [(6 * 24 + 23) * 3_600_000 + 59 * 60_000, "6d23h"],
    [3_600_000 + 30_000, "1h"],
  ])("shows %i ms remaining as %s", (ms, text) => expect(formatRemaining(ms)).toBe(text));
});
