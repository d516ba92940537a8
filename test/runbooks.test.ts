import { spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AGENT_BIN, agentWorkspace, rootFingerprint } from "./harness/cert-agent.js";
import { eventually } from "./harness/eventually.js";
import type { CaWorkspace } from "./harness/fleetca-process.js";
import { fetchRoots, mtlsRequest } from "./harness/http.js";
import { opensslAll } from "./harness/openssl.js";
import { REPO } from "./harness/paths.js";

/**
 * docs/runbooks.md, runbook 1 (an intermediate key leaked: the kill switch), step by step with
 * the commands the page prints, against a real daemon and a live cert-agent.
 */
const RUNBOOK = readFileSync(join(REPO, "docs", "runbooks.md"), "utf8");

describe("runbook 1: an intermediate key leaked", () => {
  let ws: CaWorkspace;
  afterAll(() => ws?.remove());

  it("revoke-issuer stops it, the fleet renews onto a fresh intermediate, whole-chain checkers refuse the old leaves, the log verifies", { timeout: 120_000 }, async () => {
    ws = await agentWorkspace();
    const d = await ws.start();
    const agentOut = join(ws.dir, "agent-out");
    let agentLog = "";
    const agent = await (async () => {
      const tokenFile = join(ws.dir, "agent.token");
      writeFileSync(tokenFile, `${await ws.token("web", ["web.internal"])}\n`);
      const child = spawn(process.execPath, [AGENT_BIN, "--ca", d.apiUrl, "--root-fingerprint", await rootFingerprint(d.publicUrl), "--token-file", tokenFile, "--out", agentOut, "--san", "web.internal"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      child.stdout.on("data", (b: Buffer) => (agentLog += b.toString()));
      child.stderr.on("data", (b: Buffer) => (agentLog += b.toString()));
      return child;
    })();
    try {
      const leafOf = () => (existsSync(join(agentOut, "cert.pem")) ? new X509Certificate(readFileSync(join(agentOut, "cert.pem"))) : null);
      const { seen: before } = await eventually(15_000, "the agent published a certificate", async () => leafOf(), (c) => c !== null);
      const roots = await fetchRoots(d.publicUrl);

      // Step 1: the key id, as the runbook finds it, then the kill switch.
      expect(RUNBOOK).toContain("curl -s $PUBLIC/intermediate.crt | openssl x509 -inform DER -noout -ext");
      const ski = spawnSync("sh", ["-c", `curl -s ${d.publicUrl}/intermediate.crt | openssl x509 -inform DER -noout -ext subjectKeyIdentifier`], { encoding: "utf8" });
      const keyId = ski.stdout.split("\n")[1]!.trim().replace(/:/g, "").toLowerCase();
      expect(keyId).toMatch(/^[0-9a-f]{40}$/);
      expect(RUNBOOK).toContain("fleetca revoke-issuer <INTERMEDIATE-KEYID> --reason keyCompromise --config $CONFIG");
      const kill = await ws.cli(["revoke-issuer", keyId, "--reason", "keyCompromise"]);
      expect(kill.code, kill.stderr).toBe(0);
      const fresh = /new intermediate key id: ([0-9a-f]{40}) \(issuing now\)/.exec(kill.stdout)?.[1];
      expect(fresh).toBeDefined();
      // The agent's certificate and the API's own serving certificate.
      expect(Number(/affected: (\d+) live certificate/.exec(kill.stdout)?.[1])).toBeGreaterThanOrEqual(2);

      // Step 2: the daemon switched; the agent's certificate is due now.
      await eventually(5_000, "the daemon serves the fresh intermediate", async () => Buffer.from(await (await fetch(`${d.publicUrl}/intermediate.crt`)).arrayBuffer()), (der) => skiOf(new X509Certificate(der)) === fresh);
      const info = await mtlsRequest(`${d.apiUrl}/v1/renewal-info/${before!.serialNumber.toLowerCase()}`, roots, { method: "GET" });
      expect(info.status, info.raw).toBe(200);
      expect(new Date((info.body.suggestedWindow as { start: string }).start).getTime()).toBeLessThanOrEqual(Date.now());

      // Step 3: a whole-chain checker with /crls.pem refuses the old leaf.
      const crls = join(ws.dir, "crls.pem");
      writeFileSync(crls, await (await fetch(`${d.publicUrl}/crls.pem`)).text());
      writeFileSync(join(ws.dir, "roots.pem"), roots);
      writeFileSync(join(ws.dir, "old-chain.pem"), readFileSync(join(agentOut, "chain.pem")));
      writeFileSync(join(ws.dir, "old-leaf.pem"), before!.toString());
      const old = opensslAll(["verify", "-crl_check_all", "-CRLfile", crls, "-CAfile", join(ws.dir, "roots.pem"), "-untrusted", join(ws.dir, "old-chain.pem"), join(ws.dir, "old-leaf.pem")]);
      expect(old.code).not.toBe(0);
      expect(old.out).toMatch(/certificate revoked/);

      // The agent acts on its pulled window at its next renewal-info poll (Retry-After); SIGHUP
      // makes that now. It renews (no new token) onto the fresh intermediate.
      agent.kill("SIGHUP");
      const { seen: after } = await eventually(20_000, "the agent renewed onto the fresh intermediate", async () => leafOf(), (c) => c !== null && authorityKeyIdOf(c) === fresh);
      expect(after!.serialNumber).not.toBe(before!.serialNumber);
      writeFileSync(crls, await (await fetch(`${d.publicUrl}/crls.pem`)).text());
      writeFileSync(join(ws.dir, "new-chain.pem"), readFileSync(join(agentOut, "chain.pem")));
      writeFileSync(join(ws.dir, "new-leaf.pem"), after!.toString());
      const ok = opensslAll(["verify", "-crl_check_all", "-CRLfile", crls, "-CAfile", join(ws.dir, "roots.pem"), "-untrusted", join(ws.dir, "new-chain.pem"), join(ws.dir, "new-leaf.pem")]);
      expect(ok.code, ok.out).toBe(0);
      expect(agentLog).not.toMatch(/level=error/);

      // Step 4: the issuance log verifies and records the kill switch.
      const verify = await ws.cli(["audit", "verify"]);
      expect(verify.code, verify.stderr).toBe(0);
      const events = (await ws.cli(["audit", "query", "--since", "1h", "--json"])).stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(events.find((e) => e.kind === "event" && e.event === "issuer_revoked")).toMatchObject({ details: { intermediate: keyId, replacement: fresh } });
    } finally {
      agent.kill("SIGTERM");
      await new Promise((r) => (agent.exitCode !== null ? r(null) : agent.once("exit", r)));
      await d.stop();
    }
  });
});

function skiOf(c: X509Certificate): string {
  return hexExtension(c, "subjectKeyIdentifier");
}

function authorityKeyIdOf(c: X509Certificate): string {
  return hexExtension(c, "authorityKeyIdentifier");
}

function hexExtension(c: X509Certificate, ext: string): string {
  const r = spawnSync("openssl", ["x509", "-noout", "-ext", ext], { input: c.toString(), encoding: "utf8" });
  return r.stdout.split("\n")[1]!.trim().replace(/^keyid:/, "").replace(/:/g, "").toLowerCase();
}
