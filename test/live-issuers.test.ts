import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { loadConfig } from "../src/config/load.js";
import { systemClock } from "../src/core/clock.js";
import { openDataDir, type OpenedDataDir } from "../src/cli/data-dir.js";
import { rotateIntermediate } from "../src/cli/intermediate-rotation.js";
import { LiveIssuers } from "../src/issuance/live-issuers.js";
import type { IssuerRecord } from "../src/storage/ports.js";
import { SqliteInventoryPorts } from "../src/storage/sqlite/sqlite-inventory-ports.js";

/**
 * LiveIssuers over the asynchronous issuer ports: a refresh spans awaits (the issuers read, each
 * intermediate's last expiry), so two refreshes must not interleave. A slow read of the table as
 * it was before a rotation must never put the old intermediate back after a later read made the
 * new one current (a daemon would then issue from the old one again).
 */
describe("LiveIssuers", () => {
  let ws: CaWorkspace;
  let dd: OpenedDataDir;

  beforeAll(async () => {
    ws = new CaWorkspace();
    expect((await ws.cli(["init"])).code).toBe(0);
    dd = openDataDir(ws.dataDir, undefined, { create: false });
  });

  afterAll(() => {
    dd?.store.close();
    ws?.remove();
  });

  it("applies refreshes in the order they were asked: a slow read from before a rotation does not undo it", async () => {
    const inventory = new SqliteInventoryPorts(dd.store);
    // When `gate` is set, the next read takes the rows at once but answers only once it opens.
    let gate: Promise<void> | null = null;
    let readTaken!: () => void;
    const taken = new Promise<void>((r) => (readTaken = r));
    const catalog = {
      listIssuers: async (): Promise<IssuerRecord[]> => {
        const records = await inventory.listIssuers();
        const g = gate;
        if (g) {
          gate = null;
          readTaken();
          await g;
        }
        return records;
      },
    };
    const live = new LiveIssuers(catalog, inventory, dd.caKeys, systemClock);
    const before = (await live.refresh())!;

    let open!: () => void;
    gate = new Promise<void>((r) => (open = r));
    const stale = live.refresh();
    await taken;
    const { config } = loadConfig(ws.configPath, ws.env);
    const rotation = await rotateIntermediate(dd, config, systemClock);
    expect(rotation.previousKeyId).toBe(before.current.keyIdHex);
    const fresh = live.refresh();
    // Give the later refresh time to finish first if it could (it must not: it waits for the
    // earlier one), then let the earlier read answer.
    await Promise.race([fresh, new Promise((r) => setTimeout(r, 300))]);
    open();

    expect(await stale).toBeNull();
    const after = await fresh;
    expect(after?.current.keyIdHex).toBe(rotation.current.keyId);
    expect(live.lineup.current.keyIdHex).toBe(rotation.current.keyId);
    // Nothing changed since: the next refresh reports no new lineup and keeps the new intermediate.
    expect(await live.refresh()).toBeNull();
    expect(live.lineup.current.keyIdHex).toBe(rotation.current.keyId);
  });

  it("rejects a refresh whose read fails and keeps serving the last lineup; the next refresh reads again", async () => {
    const inventory = new SqliteInventoryPorts(dd.store);
    let fail = false;
    const catalog = {
      listIssuers: async (): Promise<IssuerRecord[]> => {
        if (fail) throw new Error("database unavailable");
        return inventory.listIssuers();
      },
    };
    const live = new LiveIssuers(catalog, inventory, dd.caKeys, systemClock);
    const first = (await live.refresh())!;
    fail = true;
    await expect(live.refresh()).rejects.toThrow("database unavailable");
    expect(live.lineup).toBe(first);
    fail = false;
    expect(await live.refresh()).toBeNull();
  });
});
