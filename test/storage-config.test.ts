import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config/load.js";

/** `storage:` (issue 17): SQLite by default, PostgreSQL by URL, mistakes refused in one line. */
describe("storage config", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const load = (yaml: string) => {
    const dir = mkdtempSync(join(tmpdir(), "fleetca-storage-config-"));
    dirs.push(dir);
    writeFileSync(join(dir, "c.yaml"), yaml);
    return { dir, config: () => loadConfig(join(dir, "c.yaml"), {}).config };
  };

  it("defaults to SQLite", () => {
    expect(load("dataDir: ./d\n").config().storage).toEqual({ type: "sqlite" });
  });

  it("takes a PostgreSQL URL, a password file relative to the config, and a pool size", () => {
    const { dir, config } = load("storage:\n  type: postgres\n  url: postgres://fleetca@db.internal:5432/fleetca?sslmode=verify-full\n  passwordFile: secrets/pg\n");
    expect(config().storage).toEqual({
      type: "postgres",
      url: "postgres://fleetca@db.internal:5432/fleetca?sslmode=verify-full",
      passwordFile: join(dir, "secrets/pg"),
      pool: 10,
    });
  });

  it.each([
    ["type: postgres\n", /storage\.url/],
    ["type: postgres\n  url: mysql://h/db\n", /storage\.url: expected a postgres/],
    ["type: postgres\n  url: postgres://u:hunter2@h/db\n", /storage\.url: must not hold a password: put it in storage\.passwordFile/],
    ["type: postgres\n  url: postgres://u@h\n", /storage\.url: must name a database/],
    ["type: postgres\n  url: postgres://u@h/db\n  pool: 0\n", /storage\.pool: must be at least 1/],
    ["type: mysql\n", /storage\.type/],
    ["type: sqlite\n  url: postgres://u@h/db\n", /unknown key\(s\) url/],
  ])("refuses %j in one line, without the secret", (body, message) => {
    const { config } = load(`storage:\n  ${body}`);
    let err: Error | undefined;
    try {
      config();
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(message);
    expect(err?.message).not.toContain("hunter2");
    expect(err?.message.split("\n")).toHaveLength(1);
  });
});
