import { describe, expect, it } from "vitest";
import { claimAt } from "../src/attestation/claims.js";
import { renderSans } from "../src/attestation/san-template.js";
import { CaError } from "../src/core/errors.js";

/** The template engine is where a platform claim becomes a name: it must never widen one. */
describe("SAN templates", () => {
  const k8s = { "kubernetes.io": { namespace: "prod", serviceaccount: { name: "api" } }, sub: "system:serviceaccount:prod:api" };

  it("finds claims under keys that contain dots", () => {
    expect(claimAt(k8s, "kubernetes.io.namespace")).toBe("prod");
    expect(claimAt(k8s, "kubernetes.io.serviceaccount.name")).toBe("api");
    expect(claimAt(k8s, "kubernetes.io.missing")).toBeUndefined();
    expect(claimAt({ a: { b: 1 } }, "a.b.c")).toBeUndefined();
  });

  it("renders DNS (lower-cased) and URI names, integers included", () => {
    const sans = renderSans(
      { dns: ["{host}.{project_number}.internal"], uri: ["spiffe://{td}/ns/{ns}/sa/{sa}"] },
      { host: "Web-1", project_number: 1234567, ...k8s },
      { literals: { td: "example.org" }, aliases: { ns: "kubernetes.io.namespace", sa: "kubernetes.io.serviceaccount.name" } },
    );
    expect(sans).toEqual({ dns: ["web-1.1234567.internal"], ip: [], uri: ["spiffe://example.org/ns/prod/sa/api"] });
  });

  it.each([
    ["a dot", "a.b"],
    ["a slash", "a/b"],
    ["a wildcard", "*"],
    ["a space", "a b"],
    ["a control character", "a\u0000b"],
    ["a percent escape", "a%2fb"],
    ["an empty string", ""],
    ["a leading hyphen", "-a"],
    ["a 64-character label", "a".repeat(64)],
  ])("refuses a claim value with %s", (_n, value) => {
    const render = () => renderSans({ dns: ["{v}.internal"], uri: ["spiffe://example.org/{v}"] }, { v: value });
    expect(render).toThrow(CaError);
    expect(render).toThrow(/not allowed|no usable claim/);
  });

  it.each([
    ["a missing claim", {}],
    ["an object claim", { v: { x: 1 } }],
    ["a boolean claim", { v: true }],
    ["a negative number", { v: -1 }],
  ])("refuses %s", (_n, payload) => {
    expect(() => renderSans({ dns: ["{v}.internal"], uri: [] }, payload)).toThrow(/no usable claim/);
  });
});
