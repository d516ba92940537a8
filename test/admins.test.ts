import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { FakePlatform } from "../scripts/fake-platform.mjs";
import { AdminSans } from "../src/attestation/admin-sans.js";
import { JwksSource } from "../src/attestation/jwks.js";
import { JwtProvisioner } from "../src/attestation/jwt.js";
import { ManualClock } from "../src/core/clock.js";
import { CaError } from "../src/core/errors.js";
import { Secret } from "../src/core/secret.js";
import { sansFromList } from "../src/core/sans.js";
import { createLogger } from "../src/log/logger.js";
import { createBootstrapToken, type BootstrapSettings } from "../src/attestation/bootstrap.js";
import { templateCanRender } from "../src/attestation/san-template.js";
import { openDataDir } from "../src/cli/data-dir.js";
import { systemClock } from "../src/core/clock.js";
import { loadConfig } from "../src/config/load.js";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { postApi, signBody } from "./harness/http.js";
import { makeCsr } from "./harness/openssl.js";
import { FLEETCA_BIN } from "./harness/paths.js";
import { SqliteOperationsPorts } from "../src/storage/sqlite/sqlite-operations-ports.js";

const ADMIN = "spiffe://example.org/admin";
const OPS = "spiffe://example.org/ops";

/** Loads `yaml` as a config file; returns the one-line error, or null when it loads. */
function loadError(yaml: string): string | null {
  const dir = mkdtempSync(join(tmpdir(), "fleetca-admins-"));
  try {
    writeFileSync(join(dir, "c.yaml"), yaml);
    loadConfig(join(dir, "c.yaml"), {});
    return null;
  } catch (e) {
    return (e as Error).message;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const jwtProvisioner = (extra: string, sans = `{ uri: ["spiffe://example.org/{sub}"] }`) => `  - name: oidc
    type: jwt
    issuer: https://oidc.test
    audience: fleetca-test
    jwks: { url: https://oidc.test/jwks }
    sans: ${sans}
${extra}`;

describe("admin SANs in provisioner templates (config load)", () => {
  it("refuses at start-up a jwt template that could render the admin SAN, unless mayIssueAdmin", () => {
    const yaml = `admins: ["${ADMIN}"]\nprovisioners:\n  - { name: bootstrap, type: bootstrap }\n${jwtProvisioner("")}`;
    const err = loadError(yaml);
    expect(err).toMatch(
      /provisioners\.1\.sans: provisioner "oidc" could issue the admin SAN spiffe:\/\/example\.org\/admin \(template "spiffe:\/\/example\.org\/\{sub\}"\): set mayIssueAdmin: true on it, or narrow the template$/,
    );
    expect(err).not.toContain("\n");
    expect(loadError(`${yaml}    mayIssueAdmin: true\n`)).toBeNull();
    // Whichever provisioner the admin entry names: the name itself is held back.
    expect(loadError(`admins: [{ provisioner: bootstrap, san: "${ADMIN}" }]\nprovisioners:\n  - { name: bootstrap, type: bootstrap }\n${jwtProvisioner("")}`)).toMatch(/could issue the admin SAN/);
    // A template that cannot render it is fine without the flag.
    expect(loadError(`admins: ["${ADMIN}"]\nprovisioners:\n  - { name: bootstrap, type: bootstrap }\n${jwtProvisioner("", `{ uri: ["spiffe://example.org/ci/{sub}"] }`)}`)).toBeNull();
  });

  it("refuses it when `fleetca serve` starts: non-zero exit, one line, no daemon", () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetca-admins-"));
    try {
      writeFileSync(
        join(dir, "c.yaml"),
        `dataDir: ${join(dir, "ca-data")}\nlisten: { api: "127.0.0.1:0", public: "127.0.0.1:0" }\nadmins: ["${ADMIN}"]\nprovisioners:\n  - { name: bootstrap, type: bootstrap }\n${jwtProvisioner("")}`,
      );
      const r = spawnSync(process.execPath, [FLEETCA_BIN, "serve", "--config", join(dir, "c.yaml")], { encoding: "utf8", timeout: 20_000, env: { ...process.env, FLEETCA_PASSPHRASE: "" } });
      expect(r.status, r.stdout + r.stderr).not.toBe(0);
      expect(r.signal).toBeNull();
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/provisioner "oidc" could issue the admin SAN spiffe:\/\/example\.org\/admin/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("sees kubernetes templates, DNS case and trailing dots, and the values a provisioner insists on", () => {
    const k8s = (extra: string, trustDomain = "example.org") =>
      `admins: ["spiffe://example.org/ns/kube-system/sa/admin"]\nprovisioners:\n  - { name: bootstrap, type: bootstrap }\n  - { name: k8s, type: kubernetes, issuer: https://k8s, audience: fleetca, jwks: { url: https://k8s/jwks }, trustDomain: ${trustDomain}${extra} }\n`;
    expect(loadError(k8s(""))).toMatch(/provisioners\.1\.sans: provisioner "k8s" could issue the admin SAN spiffe:\/\/example\.org\/ns\/kube-system\/sa\/admin \(template "spiffe:\/\/\{trustDomain\}/);
    expect(loadError(k8s(", namespaces: [prod]"))).toBeNull();
    expect(loadError(k8s(", namespaces: [prod, kube-system]"))).toMatch(/could issue the admin SAN/);
    expect(loadError(k8s("", "other.org"))).toBeNull();

    const opts = { fixed: { env: ["prod", "staging"] } };
    expect(templateCanRender("dns", "{host}.Example.ORG", "admin.example.org")).toBe(true);
    expect(templateCanRender("dns", "{host}.example.org.", "admin.example.org")).toBe(true);
    expect(templateCanRender("dns", "{host}.example.org", "a.b.example.org")).toBe(false); // one label only
    expect(templateCanRender("dns", "admin.{env}.example.org", "admin.prod.example.org", opts)).toBe(true);
    expect(templateCanRender("dns", "admin.{env}.example.org", "admin.ops.example.org", opts)).toBe(false);
    expect(templateCanRender("uri", "spiffe://example.org/{sub}", "SPIFFE://EXAMPLE.ORG/admin")).toBe(true);
    expect(templateCanRender("uri", "spiffe://example.org/{sub}", "spiffe://example.org/a/b")).toBe(false); // one segment only
    expect(templateCanRender("uri", "spiffe://example.org/x{sub}", "spiffe://example.org/admin")).toBe(false);
    expect(templateCanRender("uri", "spiffe://example.org/{a}{b}", "spiffe://example.org/admin")).toBe(true);
    // requiredClaims narrow a jwt template the same way.
    const gated = (required: string) =>
      `admins: ["admin.prod.example.org"]\nprovisioners:\n  - { name: bootstrap, type: bootstrap }\n${jwtProvisioner(required, `{ dns: ["{host}.{env}.example.org"] }`)}`;
    expect(loadError(gated(""))).toMatch(/could issue the admin SAN admin\.prod\.example\.org/);
    expect(loadError(gated("    requiredClaims: { env: staging }\n"))).toBeNull();
  });

  it.each([
    ["an entry naming a provisioner that is not configured", `admins: [{ provisioner: nope, san: "${ADMIN}" }]`, /admins\.0: names provisioner "nope", which is not configured/],
    ["a plain SAN without a bootstrap provisioner", `admins: ["${ADMIN}"]\nprovisioners: [{ name: other, type: bootstrap }]`, /admins\.0: names provisioner "bootstrap", which is not configured \(a plain SAN means "bootstrap"/],
    ["an entry whose provisioner may not issue admin SANs", `admins: ["${ADMIN}"]\nprovisioners: [{ name: bootstrap, type: bootstrap, mayIssueAdmin: false }]`, /admins\.0: provisioner "bootstrap" may not issue admin SANs: set mayIssueAdmin: true on it/],
    ["an entry that is not a SAN", `admins: [{ provisioner: bootstrap, san: "not a name" }]`, /admins\.0\.san: expected a SAN/],
    ["an entry with an unknown key", `admins: [{ provisioner: bootstrap, san: "${ADMIN}", role: root }]`, /admins\.0: unknown key\(s\) role/],
    ["an entry that is neither", "admins: [42]", /admins\.0: expected a SAN or \{ provisioner, san \}$/],
  ])("refuses %s", (_n, yaml, expected) => {
    expect(loadError(`${yaml}\n`)).toMatch(expected);
  });
});

describe("admin SANs held back by the provisioner itself (behind the config check)", () => {
  const platform = new FakePlatform({ alg: "ES256" });
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fleetca-admins-"));
    await platform.mint({}); // the key exists once a token was signed
    writeFileSync(join(dir, "jwks.json"), JSON.stringify(platform.jwks()));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const clock = new ManualClock();
  const provisioner = (mayIssue: boolean) =>
    new JwtProvisioner(
      {
        provisioner: "oidc",
        issuer: "https://oidc.test",
        audiences: ["fleetca-test"],
        algorithms: ["ES256"],
        leewayMs: 60_000,
        jti: "required",
        requiredClaims: {},
        sans: { dns: [], uri: ["spiffe://example.org/{sub}"] },
        admin: { sans: new AdminSans([{ provisioner: "bootstrap", san: ADMIN }]), mayIssue },
      },
      new JwksSource({ file: join(dir, "jwks.json"), maxAgeMs: 600_000, refetchCooldownMs: 30_000 }, clock, createLogger({ level: "silent", format: "logfmt" })),
    );
  const tokenFor = async (sub: string) => {
    const now = Math.floor(clock.now().getTime() / 1000);
    return new Secret(await platform.mint({ iss: "https://oidc.test", aud: "fleetca-test", sub, iat: now, exp: now + 300, jti: randomUUID() }));
  };
  const ctx = () => ({ now: clock.now(), audiences: [] });

  it("refuses (403) a token whose template renders an admin SAN, unless mayIssueAdmin", async () => {
    const refused = await provisioner(false).authorize(await tokenFor("admin"), ctx()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CaError);
    expect((refused as CaError).code).toBe("forbidden");
    expect((refused as CaError).message).toBe(`admin_san: provisioner oidc may not issue the admin SAN ${ADMIN} (it needs mayIssueAdmin: true)`);
    expect((await provisioner(false).authorize(await tokenFor("web"), ctx())).policy.sans.uri).toEqual(["spiffe://example.org/web"]);
    expect((await provisioner(true).authorize(await tokenFor("admin"), ctx())).policy.sans.uri).toEqual([ADMIN]);
  });

  it("holds back case variants of an admin SAN too", () => {
    const admins = new AdminSans([{ provisioner: "bootstrap", san: ADMIN }]);
    expect(admins.among(sansFromList(["SPIFFE://Example.ORG/admin", "web.internal"]))).toEqual(["SPIFFE://Example.ORG/admin"]);
    expect(admins.among(sansFromList(["spiffe://example.org/admin2"]))).toEqual([]);
    expect(admins.grantsThrough("bootstrap", ADMIN)).toBe(true);
    expect(admins.grantsThrough("oidc", ADMIN)).toBe(false);
  });
});

describe("admins are identities: provisioner and SAN (real daemon, real TLS)", () => {
  const platform = new FakePlatform({ alg: "ES256" });
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let ca: CaClient;
  let admin: Issued;

  beforeAll(async () => {
    await platform.start();
    ws = new CaWorkspace({
      extraConfig: `admins:
  - "${ADMIN}"
  - { provisioner: oidc, san: "${OPS}" }
provisioners:
  - { name: bootstrap, type: bootstrap }
  - { name: hosts, type: bootstrap, mayIssueAdmin: false }
  - name: oidc
    type: jwt
    issuer: https://oidc.test
    audience: fleetca-test
    jwks: { url: ${platform.jwksUrl} }
    algorithms: [ES256]
    mayIssueAdmin: true
    sans: { uri: ["spiffe://example.org/{sub}"] }
`,
    });
    d = await ws.start();
    ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    // The plain-string form: the admin SAN through bootstrap, with a token created with --admin.
    admin = await ca.issue("admin", [ADMIN], {}, ["--admin"]);
  });
  afterAll(async () => {
    await d?.stop();
    await platform.stop();
    ws?.remove();
  });

  let n = 0;
  /** A certificate through the oidc provisioner for `sub` (SAN spiffe://example.org/{sub}). */
  async function viaOidc(sub: string): Promise<Issued> {
    const now = Math.floor(Date.now() / 1000);
    const token = await platform.mint({ iss: "https://oidc.test", aud: "fleetca-test", sub, iat: now, exp: now + 300, jti: randomUUID() });
    const name = `oidc-${++n}`;
    const csr = makeCsr(ws.dir, name);
    const r = await postApi(`${ca.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem) });
    expect(r.status, r.raw).toBe(201);
    return ca.keep(name, r.body, csr.keyPath);
  }

  /** A bootstrap token signed with the provisioner's own key, but minted outside `token create`'s rules. */
  async function forged(provisioner: string, sans: string[], settings: Partial<BootstrapSettings> = {}, admin = false): Promise<string> {
    const dd = openDataDir(ws.dataDir, undefined, { create: false });
    try {
      const t = await createBootstrapToken(
        { name: provisioner, maxTokenTtlMs: 3600_000, leewayMs: 60_000, ...settings },
        dd.caKeys,
        new SqliteOperationsPorts(dd.store),
        { subject: "forged", sans, ttlMs: 300_000, audience: `${ca.apiUrl}/v1/sign`, admin },
        systemClock,
      );
      return t.reveal();
    } finally {
      dd.store.close();
    }
  }

  it("grants admin to the plain-string entry's SAN issued through bootstrap", async () => {
    const c = await ca.issue("plain-1");
    const r = await ca.record(admin.identity, c.serial);
    expect(r.status, r.raw).toBe(200);
    expect(r.body.provisioner).toBe("bootstrap");
  });

  it("grants nothing for the admin SAN obtained through another provisioner", async () => {
    const lookalike = await viaOidc("admin");
    const victim = await ca.issue("victim-1");
    const rec = await ca.record(lookalike.identity, victim.serial);
    expect(rec.status, rec.raw).toBe(403);
    expect(rec.body.error).toBe("forbidden");
    const rev = await ca.revoke(lookalike.identity, { serial: victim.serial });
    expect(rev.status, rev.raw).toBe(403);
    // The stored record says where it came from, and it does carry the admin SAN.
    const mine = await ca.record(admin.identity, lookalike.serial);
    expect(mine.body.provisioner).toBe("oidc");
    expect(mine.body.sans).toEqual([ADMIN]);
    // The entry that names oidc is honoured through oidc.
    const ops = await viaOidc("ops");
    expect((await ca.record(ops.identity, victim.serial)).status).toBe(200);
  });

  it("`token create` needs --admin for an admin SAN, and refuses --admin without one, in one line", async () => {
    const without = await ws.cli(["token", "create", "--sub", "a", "--san", ADMIN]);
    expect(without.code).not.toBe(0);
    expect(without.stderr.trim()).toBe(`fleetca: --san ${ADMIN} is an admin SAN (config admins): add --admin to create an admin token`);
    const noAdminSan = await ws.cli(["token", "create", "--sub", "a", "--san", "web.internal", "--admin"]);
    expect(noAdminSan.code).not.toBe(0);
    expect(noAdminSan.stderr).toMatch(/--admin: none of the --san values is an admin SAN listed in config admins/);
    expect(noAdminSan.stderr.trim().split("\n")).toHaveLength(1);
    const elsewhere = await ws.cli(["token", "create", "--sub", "a", "--san", OPS, "--admin"]);
    expect(elsewhere.stderr).toMatch(/config admins does not honour spiffe:\/\/example\.org\/ops through provisioner bootstrap/);
    const shut = await ws.cli(["token", "create", "--sub", "a", "--san", ADMIN, "--admin", "--provisioner", "hosts"]);
    expect(shut.stderr).toMatch(/--admin: provisioner hosts may not issue admin SANs \(mayIssueAdmin: false\)/);

    const ok = await ws.cli(["token", "create", "--sub", "admin-2", "--san", ADMIN, "--admin", "--aud", `${ca.apiUrl}/v1/sign`]);
    expect(ok.code, ok.stderr).toBe(0);
    const csr = makeCsr(ws.dir, "admin-2");
    const r = await postApi(`${ca.apiUrl}/v1/sign`, ca.roots, { token: ok.stdout.trim(), body: signBody(csr.csrPem) });
    expect(r.status, r.raw).toBe(201);
    const admin2 = ca.keep("admin-2", r.body, csr.keyPath);
    expect((await ca.record(admin2.identity, admin.serial)).status).toBe(200);
  });

  it("refuses at /v1/sign a token listing an admin SAN without the signed admin claim, even one signed with the provisioner key", async () => {
    const token = await forged("bootstrap", ["web-2.internal", ADMIN]);
    const before = ws.rowCounts();
    // Asking only for the harmless name does not help: the token itself was not minted for admins.
    const r = await postApi(`${ca.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(makeCsr(ws.dir, "forged-1", { sans: ["DNS:web-2.internal"] }).csrPem) });
    expect(r.status, r.raw).toBe(403);
    expect(r.body).toEqual({ error: "forbidden", message: `admin_san: the token lists the admin SAN ${ADMIN} but was not created with --admin` });
    expect(ws.rowCounts()).toEqual(before);
  });

  it("refuses an admin SAN from a provisioner that may not issue one, even with the admin claim", async () => {
    // Minted as if config let `hosts` issue it: the daemon's config says mayIssueAdmin: false.
    const token = await forged("hosts", [ADMIN], { admin: { sans: new AdminSans([{ provisioner: "hosts", san: ADMIN }]), mayIssue: true } }, true);
    const before = ws.rowCounts();
    const r = await postApi(`${ca.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(makeCsr(ws.dir, "forged-2").csrPem) });
    expect(r.status, r.raw).toBe(403);
    expect(r.body.message).toBe(`admin_san: provisioner hosts may not issue the admin SAN ${ADMIN} (it needs mayIssueAdmin: true)`);
    expect(ws.rowCounts()).toEqual(before);
    // Its ordinary tokens still work.
    const plain = await ca.issue("hosts-1", ["hosts-1.internal"], {}, ["--provisioner", "hosts"]);
    expect((await ca.record(admin.identity, plain.serial)).body.provisioner).toBe("hosts");
  });
});
