import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FakePlatform } from "../scripts/fake-platform.mjs";
import type { OpenedCa } from "../src/cli/data-dir.js";
import { openCa } from "../src/cli/open-ca.js";
import { loadConfig, passphraseFrom } from "../src/config/load.js";
import type { CertificateRecord } from "../src/storage/ports.js";
import { CaClient } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { postApi, signBody } from "./harness/http.js";
import { makeCsr, opensslAsync } from "./harness/openssl.js";
import { startPostgres, type TestPostgres } from "./harness/postgres.js";
import { STORAGE_BACKENDS } from "./harness/storage-backends.js";

/**
 * Cloud instance re-attestation (issue 15): SPIRE's gcp_iit/aws_iid let a node attest once and
 * lock a rebuilt node out; fleetca lets the same instance attest again, and retires the
 * instance's earlier lineage (revoked, reason superseded) in the same transaction, so a stolen
 * identity token cannot quietly keep a second lineage running beside the real instance. Once per
 * storage adapter (a daemon on SQLite, then one on a throwaway PostgreSQL cluster), as issuance
 * and revocation on each are their own code path (issue 17).
 */
const SIGN_AUD = "https://ca.test.internal:8443/v1/sign";

describe.each(STORAGE_BACKENDS)("a jwt provisioner with instanceClaim, on %s", (backend) => {
  const gce = new FakePlatform({ alg: "ES256" });
  let server: TestPostgres | undefined;
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  let opened: Promise<OpenedCa> | undefined;

  beforeAll(async () => {
    await gce.start();
    let storage = "";
    let passphrase: string | undefined;
    if (backend === "PostgreSQL") {
      server = await startPostgres();
      // PostgreSQL storage refuses a development KEK (one that would live in one replica's dataDir).
      passphrase = "reattestation passphrase";
      storage = `storage: { type: postgres, url: "${await server.createDatabase("reattestation")}" }\n`;
    }
    ws = new CaWorkspace({
      passphrase,
      extraConfig: `${storage}apiUrl: https://ca.test.internal:8443
provisioners:
  - { name: bootstrap, type: bootstrap }
  - name: gce
    type: jwt
    issuer: https://accounts.google.com
    audience: ${SIGN_AUD}
    jwks: { url: ${gce.jwksUrl} }
    algorithms: [ES256]
    jti: absent
    instanceClaim: google.compute_engine.instance_id
    sans:
      dns: ["{google.compute_engine.instance_name}.c.{google.compute_engine.project_id}.internal"]
`,
    });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  }, 120_000);
  afterAll(async () => {
    if (opened) await (await opened).storage.close();
    await d?.stop();
    await gce.stop();
    ws?.remove();
    await server?.stop();
  });

  /** The stored record, through the storage ports of whichever storage the config names (the CA opened once). */
  const row = async (serial: string): Promise<CertificateRecord | null> => {
    if (!opened) {
      const { config } = loadConfig(ws.configPath, ws.env);
      opened = openCa(config, passphraseFrom(config, ws.env), { create: false });
    }
    return (await opened).storage.requests.getCertificate(serial as CertificateRecord["serial"]);
  };
  let n = 0;
  const attest = async (instanceName: string, iatOffset = 0) => {
    const token = await gce.mintGce({ aud: SIGN_AUD, instanceName, projectId: "proj-a", iat: Math.floor(Date.now() / 1000) - iatOffset });
    const csr = makeCsr(ws.dir, `gce-${++n}`);
    const r = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem) });
    return { r, token, csr };
  };
  const ocspStatus = async (certPem: string, name: string) => {
    const path = join(ws.dir, `${name}.crt`);
    writeFileSync(path, certPem);
    const r = await opensslAsync(["ocsp", "-timeout", "5", "-issuer", ca.intermediatePath, "-cert", path, "-url", `${d.publicUrl}/ocsp`, "-CAfile", ca.rootsPath]);
    return r.out;
  };

  it("binds the certificate to the instance; a rebuilt instance's new token retires the old lineage; a replay is still refused", async () => {
    const first = await attest("web-1", 30);
    expect(first.r.status, first.r.raw).toBe(201);
    const neighbour = await attest("web-2", 30);
    expect(neighbour.r.status, neighbour.r.raw).toBe(201);
    const a = first.r.body.serial as string;
    expect(await row(a)).toMatchObject({ status: "valid", instance: expect.stringMatching(/^\d{19}$/) });
    // The lineage continues through renewal, still bound to the instance.
    const renewed = await ca.renew({ key: readFileSync(first.csr.keyPath), cert: `${first.r.body.certificate as string}${first.r.body.chain as string}` });
    expect(renewed.status, renewed.raw).toBe(201);
    const a2 = renewed.body.serial as string;
    expect(await row(a2)).toMatchObject({ instance: (await row(a))!.instance, lineage: a });

    // The instance is rebuilt and attests again with a new identity token.
    const again = await attest("web-1");
    expect(again.r.status, again.r.raw).toBe(201);
    const b = again.r.body.serial as string;
    expect(await row(b)).toMatchObject({ status: "valid", instance: (await row(a))!.instance, lineage: b });
    // Every live certificate of the old lineage is revoked, reason superseded (RFC 5280 §5.3.1: 4).
    expect(await row(a2)).toMatchObject({ status: "revoked", revocationReason: 4 });
    expect(await row(a)).toMatchObject({ status: "revoked", revocationReason: 4 });
    // Another instance's certificate is untouched.
    expect(await row(neighbour.r.body.serial as string)).toMatchObject({ status: "valid" });
    await eventually(5_000, "OCSP says the old lineage is revoked, superseded", () => ocspStatus(renewed.body.certificate as string, "a2"), (o) =>
      /: revoked/.test(o) && /Reason: superseded/i.test(o),
    );
    expect(await ocspStatus(again.r.body.certificate as string, "b")).toMatch(/: good/);
    // The old lineage cannot renew (revoked); the replayed token is still replayed.
    expect((await ca.renew({ key: readFileSync(first.csr.keyPath), cert: `${renewed.body.certificate as string}${renewed.body.chain as string}` })).status).toBe(401);
    const replay = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token: again.token, body: signBody(makeCsr(ws.dir, "replay").csrPem) });
    expect(replay.status, replay.raw).toBe(401);
    expect(replay.body.message).toMatch(/^replayed/);
    expect(await row(b)).toMatchObject({ status: "valid" });
  });
});
