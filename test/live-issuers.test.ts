import { beforeAll, describe, expect, it } from "vitest";
import { useInitialisedCa } from "./harness/initialised-ca.js";
import { STORAGE_BACKENDS } from "./harness/storage-backends.js";
import { systemClock } from "../src/core/clock.js";
import type { OpenedCa } from "../src/cli/data-dir.js";
import { rotateIntermediate } from "../src/cli/intermediate-rotation.js";
import { LiveIssuers } from "../src/issuance/live-issuers.js";
import type { IssuerRecord } from "../src/storage/ports.js";

/**
 * LiveIssuers over the asynchronous issuer ports: a refresh spans awaits (the issuers read, each
 * intermediate's last expiry), so two refreshes must not interleave. A slow read of the table as
 * it was before a rotation must never put the old intermediate back after a later read made the
 * new one current (a daemon would then issue from the old one again).
 *
 * On both adapters: the CA made by `fleetca init` and opened as the daemon opens it (openCa), the
 * rotation the one `fleetca rotate intermediate` makes.
 */
describe.each(STORAGE_BACKENDS)("LiveIssuers on %s", (backend) => {
  const made = useInitialisedCa(backend);
  let ca: OpenedCa;

  beforeAll(async () => {
    ca = await made.open();
  });

  it("applies refreshes in the order they were asked: a slow read from before a rotation does not undo it", async () => {
    const issuers = ca.storage.issuers;
    // When `gate` is set, the next read takes the rows at once but answers only once it opens.
    let gate: Promise<void> | null = null;
    let readTaken!: () => void;
    const taken = new Promise<void>((r) => (readTaken = r));
    const catalog = {
      listIssuers: async (): Promise<IssuerRecord[]> => {
        const records = await issuers.listIssuers();
        const g = gate;
        if (g) {
          gate = null;
          readTaken();
          await g;
        }
        return records;
      },
    };
    const live = new LiveIssuers(catalog, ca.storage.issuerLifecycle, ca.caKeys, systemClock);
    const before = (await live.refresh())!;

    let open!: () => void;
    gate = new Promise<void>((r) => (open = r));
    const stale = live.refresh();
    await taken;
    const rotation = await rotateIntermediate(ca, made.config(), systemClock);
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
    const issuers = ca.storage.issuers;
    let fail = false;
    const catalog = {
      listIssuers: async (): Promise<IssuerRecord[]> => {
        if (fail) throw new Error("database unavailable");
        return issuers.listIssuers();
      },
    };
    const live = new LiveIssuers(catalog, ca.storage.issuerLifecycle, ca.caKeys, systemClock);
    const first = (await live.refresh())!;
    fail = true;
    await expect(live.refresh()).rejects.toThrow("database unavailable");
    expect(live.lineup).toBe(first);
    fail = false;
    expect(await live.refresh()).toBeNull();
  });
});
