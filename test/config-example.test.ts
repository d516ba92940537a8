import { describe, expect, it } from "vitest";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../src/config/load.js";
import { REPO } from "./harness/paths.js";

/** config.example.yaml is documentation that must stay true: it parses, and so do its commented examples. */
describe("config.example.yaml", () => {
  it("parses as is", () => {
    const { config } = loadConfig(join(REPO, "config.example.yaml"), {});
    expect(config.provisioners.map((p) => p.type)).toEqual(["bootstrap"]);
    expect(config.issuance.maxTTL).toBe(168 * 3600_000);
    // No publicUrl: it follows listen.public.
    expect(config.publicUrl).toBe("http://127.0.0.1:8080");
    expect(config.publicUrlSource).toBe("listen.public");
  });

  it("parses with every commented example switched on", () => {
    const text = readFileSync(join(REPO, "config.example.yaml"), "utf8")
      .split("\n")
      .map((l) => l.replace(/^(\s*)# (?=- name:|\s+[a-zA-Z])/, "$1"))
      .map((l) => l.replace(/^# (apiUrl|publicUrl|passphraseFile|policy):/, "$1:"))
      .join("\n");
    const dir = mkdtempSync(join(tmpdir(), "fleetca-cfg-"));
    try {
      writeFileSync(join(dir, "config.yaml"), text);
      const { config } = loadConfig(join(dir, "config.yaml"), {});
      expect(config.provisioners.map((p) => `${p.name}:${p.type}`)).toEqual(["bootstrap:bootstrap", "gce:jwt", "k8s:kubernetes"]);
      const k8s = config.provisioners[2]!;
      expect(k8s.type === "kubernetes" && k8s.jwks.file).toBe(join(dir, "k8s-jwks.json"));
      expect(config.apiUrl).toBe("https://ca.internal:8443");
      expect(config.publicUrl).toBe("http://ca.internal:8080");
      expect(config.policy?.ip?.allow).toEqual(["10.0.0.0/8", "fd00::/8"]);
      expect(config.policy?.uri?.allow).toEqual(["spiffe://example.org/"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ["an HMAC algorithm", "algorithms: [HS256]", /HMAC and "none" are never allowed/],
    ["a template with unbalanced braces", 'sans: { dns: ["{sub.internal"] }', /unbalanced braces/],
    ["a DNS template that cannot make a DNS name", 'sans: { dns: ["{sub}_x.internal"] }', /valid DNS name/],
    ["no SAN template", "sans: {}", /at least one SAN template/],
    ["both jwks file and url", "jwks: { file: a.json, url: https://x/jwks }", /exactly one of file or url/],
    ["a plain-http JWKS on the network", "jwks: { url: http://keys.example.com/jwks }", /must be https \(http only on loopback\)/],
  ])("refuses a jwt provisioner with %s", (_n, line, expected) => {
    const dir = mkdtempSync(join(tmpdir(), "fleetca-cfg-"));
    try {
      const base = { name: "p", type: "jwt", issuer: "https://iss", audience: "https://ca/v1/sign", jwks: "{ url: https://iss/jwks }", sans: '{ dns: ["{sub}.internal"] }' };
      const key = line.split(":")[0]!;
      const fields = Object.entries(base).filter(([k]) => k !== key).map(([k, v]) => `    ${k}: ${v}`);
      writeFileSync(join(dir, "c.yaml"), `provisioners:\n  - ${fields.join("\n").trimStart()}\n    ${line}\n`);
      expect(() => loadConfig(join(dir, "c.yaml"), {})).toThrow(expected);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
