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
    "sslmode=verify-full&sslrootcert=/etc/fleetca/pg-ca.pem",
    "sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/etc/c.crt&sslkey=/etc/c.key",
    "sslmode=disable",
    "sslmode=no-verify",
    "uselibpqcompat=true&sslmode=require",
    "uselibpqcompat=true&sslmode=verify-ca&sslrootcert=/etc/ca.pem",
  ])("takes the TLS query %s", (query) => {
    const url = `postgres://u@h/db?${query}`;
    expect(load(`storage:\n  type: postgres\n  url: "${url}"\n`).config().storage).toMatchObject({ type: "postgres", url });
  });

  it.each([
    ["type: postgres\n", /storage\.url/],
    ["type: postgres\n  url: mysql://h/db\n", /storage\.url: expected a postgres/],
    ["type: postgres\n  url: postgres://u:hunter2@h/db\n", /storage\.url: must not hold a password: put it in storage\.passwordFile/],
    ["type: postgres\n  url: postgres://u@h\n", /storage\.url: must name a database/],
    ["type: postgres\n  url: postgres://u@h/db\n  pool: 0\n", /storage\.pool: must be at least 1/],
    ["type: mysql\n", /storage\.type/],
    ["type: sqlite\n  url: postgres://u@h/db\n", /unknown key\(s\) url/],
    // node-postgres 8 reads these three as verify-full, its next major as libpq's weaker modes (pg-url-tls.ts).
    ["type: postgres\n  url: postgres://u@h/db?sslmode=require\n", /storage\.url: sslmode=require means verify-full in node-postgres 8 .*write sslmode=verify-full/],
    ["type: postgres\n  url: postgres://u@h/db?sslmode=verify-ca&sslrootcert=/etc/ca.pem\n", /storage\.url: sslmode=verify-ca means verify-full/],
    ["type: postgres\n  url: postgres://u@h/db?sslmode=prefer\n", /storage\.url: sslmode=prefer means verify-full/],
    ["type: postgres\n  url: postgres://u@h/db?sslmode=verify_full\n", /storage\.url: sslmode=verify_full: expected verify-full \(recommended\)/],
    ["type: postgres\n  url: postgres://u@h/db?uselibpqcompat=true&sslmode=verify-ca\n", /storage\.url: sslmode=verify-ca needs sslrootcert/],
    ["type: postgres\n  url: postgres://u@h/db?sslmode=verify-full&sslrootcert=certs/ca.pem\n", /storage\.url: sslrootcert=certs\/ca\.pem: must be an absolute path/],
    ["type: postgres\n  url: postgres://u@h/db?sslmode=verify-full&sslkey=client.key\n", /storage\.url: sslkey=client\.key: must be an absolute path/],
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
