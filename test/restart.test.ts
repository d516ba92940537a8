import { afterAll, describe, expect, it } from "vitest";
import { CaWorkspace } from "./harness/fleetca-process.js";
import { makeCsr } from "./harness/openssl.js";
import { fetchRoots, postApi, signBody } from "./harness/http.js";

/** The CA is its dataDir: a restart must bring back the same hierarchy, inventory and token memory. */
describe("restart on the same dataDir", () => {
  // Ports are 0 (new on each start), so tokens name the CA by its configured apiUrl instead.
  const ws = new CaWorkspace({ passphrase: "correct horse battery staple", extraConfig: "apiUrl: https://ca.test.internal:8443\n" });
  afterAll(() => ws.remove());

  it("keeps the hierarchy, the inventory and the used-token record", async () => {
    const d1 = await ws.start();
    const roots1 = await fetchRoots(d1.publicUrl);
    const inter1 = Buffer.from(await (await fetch(`${d1.publicUrl}/intermediate.crt`)).arrayBuffer());
    const token = await ws.token("web-1", ["web-1.internal"]);
    const csr = makeCsr(ws.dir, "web-1", { cn: "web-1.internal" });
    const issued = await postApi(`${d1.apiUrl}/v1/sign`, roots1, { token, body: signBody(csr.csrPem) });
    expect(issued.status).toBe(201);
    await d1.stop();

    const d2 = await ws.start();
    try {
      expect(d2.output).not.toMatch(/initialising a new hierarchy/);
      expect(await fetchRoots(d2.publicUrl)).toBe(roots1);
      const inter2 = Buffer.from(await (await fetch(`${d2.publicUrl}/intermediate.crt`)).arrayBuffer());
      expect(inter2.equals(inter1)).toBe(true);

      const list = await ws.cli(["list", "--json"]);
      expect(list.code).toBe(0);
      const serials = (JSON.parse(list.stdout) as Array<{ serial: string; provisioner: string; sans: string[] }>).map((r) => r.serial);
      expect(serials).toContain(issued.body.serial);

      const replay = await postApi(`${d2.apiUrl}/v1/sign`, roots1, { token, body: signBody(csr.csrPem) });
      expect(replay.status).toBe(401);
      expect(replay.body).toMatchObject({ error: "unauthorized", message: "replayed" });

      // And the restarted daemon still issues (a fresh token, the same root).
      const fresh = await postApi(`${d2.apiUrl}/v1/sign`, roots1, { token: await ws.token("web-1", ["web-1.internal"]), body: signBody(csr.csrPem) });
      expect(fresh.status).toBe(201);
    } finally {
      await d2.stop();
    }
  });

  it("refuses to init over an existing CA", async () => {
    const r = await ws.cli(["init"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^fleetca: .*already holds a CA; refusing to overwrite it\n$/);
  });

  it("lists with the human table, --expiring and --revoked", async () => {
    const all = await ws.cli(["list"]);
    expect(all.stdout.split("\n")[0]).toMatch(/^SERIAL\s+STATUS/);
    expect(all.stdout).toContain("web-1.internal");
    const soon = await ws.cli(["list", "--expiring", "1h", "--json"]);
    expect(JSON.parse(soon.stdout)).toEqual([]);
    const within = await ws.cli(["list", "--expiring", "48h", "--json"]);
    expect(JSON.parse(within.stdout).length).toBeGreaterThan(0);
    const revoked = await ws.cli(["list", "--revoked", "--json"]);
    expect(JSON.parse(revoked.stdout)).toEqual([]);
  });
});
