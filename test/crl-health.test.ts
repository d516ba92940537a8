import { afterAll, describe, expect, it } from "vitest";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { CaClient } from "./harness/ca-client.js";
import { startInProcess } from "./harness/in-process.js";
import { eventually } from "./harness/eventually.js";
import { ManualClock } from "../src/core/clock.js";
import type { Signer } from "../src/signing/signer.js";
import { parseCrl } from "../src/revocation/crl/crl-info.js";

const DAY = 86_400_000;
/** cRLNumber's OID (2.5.29.20) as DER: only a CRL's TBS carries it, so only CRL signatures are hit. */
const CRL_NUMBER_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x14]);

/** The daemon's Signer with a switchable fault: CRL signatures come back corrupted (one bit flipped). */
function faultyCrlSigner(inner: Signer, fault: { on: boolean }): Signer {
  return {
    keyType: inner.keyType,
    publicKeySpki: inner.publicKeySpki,
    async sign(data) {
      const sig = new Uint8Array(await inner.sign(data));
      if (fault.on && Buffer.from(data).includes(CRL_NUMBER_OID)) sig[sig.length - 1]! ^= 1;
      return sig;
    },
  };
}

async function health(publicUrl: string): Promise<{ status: number; body: { status: string; reasons?: string[]; warnings?: string[] } }> {
  const r = await fetch(`${publicUrl}/healthz`);
  return { status: r.status, body: (await r.json()) as never };
}

async function servedCrl(publicUrl: string) {
  const r = await fetch(`${publicUrl}/crl`);
  expect(r.status).toBe(200);
  return parseCrl(new Uint8Array(await r.arrayBuffer()));
}

describe("a CRL that cannot be published is loud (in-process daemon, injected signer fault)", () => {
  const ws = new CaWorkspace();
  afterAll(() => ws.remove());

  it("turns /healthz into 503 with the reason, logs at error, keeps serving the last CRL, and recovers", async () => {
    const clock = new ManualClock(new Date(Math.floor(Date.now() / 1000) * 1000));
    const fault = { on: false };
    let { daemon, logs } = await startInProcess(ws, clock, { wrapSigner: (s) => faultyCrlSigner(s, fault) });
    try {
      expect(await health(daemon.publicUrl)).toEqual({ status: 200, body: { status: "ok" } });
      const ca = await new CaClient(ws, daemon.apiUrl, daemon.publicUrl, ["--aud", `${daemon.apiUrl}/v1/sign`]).init();
      const leaf = await ca.issue("victim", ["victim.internal"], { ttl: "72h" }); // outlives the day skipped below
      const first = await servedCrl(daemon.publicUrl);

      fault.on = true;
      const r = await ws.cli(["revoke", leaf.serial, "--reason", "keyCompromise"]);
      expect(r.code, r.stderr).toBe(0);
      // The feed sees the revocation within a second; the debounced re-sign fails.
      const { seen } = await eventually(10_000, "/healthz reports the failed publication", () => health(daemon.publicUrl), (h) => h.status === 503);
      expect(seen.body.status).toBe("unavailable");
      expect(seen.body.reasons).toEqual([expect.stringMatching(/^CRL of [0-9a-f]+: publication failing since \S+: signed CRL does not match its content: signature does not verify$/)]);
      expect(logs.join("")).toMatch(/level=error msg="CRL publication failed; the previous CRL stays served and the next tick retries"/);
      // The last good CRL is still served, unchanged.
      expect((await servedCrl(daemon.publicUrl)).crlNumber).toBe(first.crlNumber);

      // Every retry fails loudly too, and a CRL past its nextUpdate is a reason of its own.
      clock.advance(DAY + 60_000);
      await daemon.tick();
      const stale = await health(daemon.publicUrl);
      expect(stale.status).toBe(503);
      expect(stale.body.reasons).toContainEqual(expect.stringMatching(/^CRL of [0-9a-f]+: served CRL #\d+ is past its nextUpdate /));
      expect(logs.join("").match(/msg="CRL publication failed/g)!.length).toBeGreaterThanOrEqual(2);

      // Restarting with a CRL that cannot be rebuilt still starts (and still says why).
      await daemon.close();
      ({ daemon, logs } = await startInProcess(ws, clock, { wrapSigner: (s) => faultyCrlSigner(s, fault) }));
      expect((await health(daemon.publicUrl)).status).toBe(503);
      expect((await servedCrl(daemon.publicUrl)).crlNumber).toBe(first.crlNumber);

      fault.on = false;
      await daemon.tick();
      expect(await health(daemon.publicUrl)).toEqual({ status: 200, body: { status: "ok" } });
      const fixed = await servedCrl(daemon.publicUrl);
      expect(fixed.crlNumber).toBeGreaterThan(first.crlNumber!);
      expect(fixed.entries.map((e) => e.serial)).toEqual([leaf.serial]);
    } finally {
      await daemon.close();
    }
  });

  it("warns about the root CRL 7 days before its nextUpdate and reports 503 past it until `fleetca crl sign-root`", async () => {
    const clock = new ManualClock(new Date(Math.floor(Date.now() / 1000) * 1000));
    let { daemon, logs } = await startInProcess(ws, clock);
    try {
      const root = (await daemon.dataDir.storage.issuers.listIssuers()).find((i) => i.role === "root")!;
      const rootCrlNext = (await daemon.dataDir.storage.crls.getCrl({ issuerKeyId: root.keyId, shard: null }))!.nextUpdate;
      clock.set(new Date(rootCrlNext.getTime() - 6 * DAY));
      await daemon.tick();
      const warned = await health(daemon.publicUrl);
      expect(warned.status).toBe(200);
      expect(warned.body.warnings).toEqual([expect.stringMatching(/^root CRL of [0-9a-f]+: nextUpdate \S+ is within 7 days; run "fleetca crl sign-root"$/)]);
      // Logged too, once an hour rather than on every tick.
      const warnings = () => logs.join("").match(/level=warn msg="CRL publication warning"/g)?.length ?? 0;
      expect(warnings()).toBe(1);
      clock.advance(10 * 60_000);
      await daemon.tick();
      expect(warnings()).toBe(1);
      clock.advance(60 * 60_000);
      await daemon.tick();
      expect(warnings()).toBe(2);

      clock.set(new Date(rootCrlNext.getTime() + 1000));
      await daemon.tick();
      const expired = await health(daemon.publicUrl);
      expect(expired.status).toBe(503);
      expect(expired.body.reasons).toContainEqual(expect.stringMatching(/^root CRL of [0-9a-f]+: past its nextUpdate/));
      await daemon.close();

      // The operator re-signs it (with the real clock: the CLI has no injected one) and the daemon serves it.
      const signed = await ws.cli(["crl", "sign-root"]);
      expect(signed.code, signed.stderr).toBe(0);
      clock.set(new Date());
      ({ daemon, logs } = await startInProcess(ws, clock));
      expect(await health(daemon.publicUrl)).toEqual({ status: 200, body: { status: "ok" } });
    } finally {
      await daemon.close();
    }
  });
});
