import { describe, expect, it } from "vitest";
import { CaError } from "../src/core/errors.js";
import { createLogger } from "../src/log/logger.js";

/**
 * How an `err` reaches the log: an unexpected failure with its stack (a bug needs it), the storage
 * being unavailable in one line with its cause (an outage repeats it on every periodic attempt).
 */
describe("errors in log lines", () => {
  const logged = (err: unknown): Record<string, unknown> => {
    const lines: string[] = [];
    createLogger({ level: "info", format: "json", write: (l) => void lines.push(l) }).warn({ err }, "attempt failed");
    expect(lines).toHaveLength(1);
    return (JSON.parse(lines[0]!) as { err: Record<string, unknown> }).err;
  };

  it("the storage unavailable: message, cause and its code, no stack", () => {
    const cause = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const err = logged(new CaError("unavailable", "the CA's storage is unavailable; retry later", { cause }));
    expect(err).toEqual({
      type: "CaError",
      code: "unavailable",
      message: "the CA's storage is unavailable; retry later",
      cause: "connect ECONNREFUSED 127.0.0.1:5432",
      causeCode: "ECONNREFUSED",
    });
  });

  it("anything else keeps its stack, other CaErrors included", () => {
    const bug = logged(new TypeError("cannot read properties of undefined"));
    expect(bug.type).toBe("TypeError");
    expect(bug.stack).toMatch(/^TypeError: cannot read properties of undefined\n\s+at /);
    const internal = logged(new CaError("internal", "signing failed"));
    expect(internal.stack).toMatch(/\n\s+at /);
  });

  it("in logfmt the unavailable line is one line with the cause", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "info", format: "logfmt", write: (l) => void lines.push(l) });
    log.warn({ err: new CaError("unavailable", "the CA's storage is unavailable; retry later", { cause: new Error("Connection terminated unexpectedly") }) }, "could not store the rate-limit buckets; retrying");
    expect(lines.join("").trimEnd().split("\n")).toHaveLength(1);
    expect(lines[0]).toContain("Connection terminated unexpectedly");
    expect(lines[0]).not.toContain("\\n    at ");
  });
});
