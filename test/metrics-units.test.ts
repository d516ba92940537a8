import { describe, expect, it } from "vitest";
import { purposeOf, countSignatures } from "../src/metrics/signature-counter.js";
import { tokenRejectionOf } from "../src/metrics/token-outcome.js";
import { CaMetrics } from "../src/metrics/ca-metrics.js";
import { daemonExposition } from "../src/metrics/metrics-exposition.js";
import { OcspAnswerCounter } from "../src/metrics/ocsp-answer-counter.js";
import { CaError } from "../src/core/errors.js";
import { ManualClock } from "../src/core/clock.js";
import type { Signer } from "../src/signing/signer.js";
import { parseExposition, total } from "./harness/prometheus.js";

/** A DER SEQUENCE around `content`, in the short or the long length form as DER requires. */
function sequence(content: number[]): Uint8Array {
  const n = content.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Uint8Array.from([0x30, ...len, ...content]);
}
const padding = (n: number) => [0x04, n, ...new Array<number>(n).fill(0)];

describe("purposeOf: what a CA key is signing, from the TBS structure's first field", () => {
  it.each([
    ["certificate", [0xa0, 0x03, 0x02, 0x01, 0x02]],
    ["crl", [0x02, 0x01, 0x01]],
    ["ocsp", [0xa2, 0x16, 0x04, 0x14]],
    ["ocsp", [0xa1, 0x10, 0x30, 0x0e]],
  ] as const)("%s, in the short and both long length forms", (purpose, head) => {
    for (const size of [4, 200, 1000]) expect(purposeOf(sequence([...head, ...padding(Math.min(size, 250))]))).toBe(purpose);
  });

  it("anything else is a probe: a digest, a v1 certificate, an OCSP version field", () => {
    expect(purposeOf(new Uint8Array(32).fill(0x30))).toBe("probe");
    expect(purposeOf(Buffer.from("fleetca key probe"))).toBe("probe");
    expect(purposeOf(sequence([0xa0, 0x03, 0x02, 0x01, 0x00, ...padding(10)]))).toBe("probe");
    expect(purposeOf(sequence([0x02, 0x01, 0x05, ...padding(10)]))).toBe("probe");
    expect(purposeOf(new Uint8Array([0x30]))).toBe("probe");
  });
});

describe("countSignatures", () => {
  it("counts each signature by purpose and keeps signOnThisThread only when the signer has it", async () => {
    const metrics = new CaMetrics({ clock: new ManualClock(new Date()), defaultMetrics: false });
    const inner: Signer = { keyType: "ecdsa-p256", publicKeySpki: new Uint8Array(1), sign: async () => Uint8Array.of(1) };
    const counted = countSignatures(inner, metrics.signaturesBy("ab".repeat(20)));
    expect(counted.signOnThisThread).toBeUndefined();
    await counted.sign(sequence([0x02, 0x01, 0x01]));
    await counted.sign(new Uint8Array(32));
    const both = countSignatures({ ...inner, signOnThisThread: () => Uint8Array.of(2) }, metrics.signaturesBy("ab".repeat(20)));
    expect(both.signOnThisThread!(sequence([0xa2, 0x01, 0x00]))).toEqual(Uint8Array.of(2));
    const m = parseExposition(await metrics.registry.metrics());
    const key = "abababababababab";
    expect([total(m, "fleetca_signatures_total", { key, purpose: "crl" }), total(m, "fleetca_signatures_total", { key, purpose: "probe" }), total(m, "fleetca_signatures_total", { key, purpose: "ocsp" })]).toEqual([1, 1, 1]);
  });
});

describe("tokenRejectionOf", () => {
  it("takes the SPEC reason, never the detail, and ignores what is not a token refusal", () => {
    expect(tokenRejectionOf(CaError.unauthorized("replayed"))).toBe("replayed");
    expect(tokenRejectionOf(CaError.unauthorized("missing_claim", "aud"))).toBe("missing_claim");
    expect(tokenRejectionOf(new CaError("unauthorized", "eyJhbGciOi.secret.stuff"))).toBe("other");
    expect(tokenRejectionOf(new CaError("bad_csr", "no"))).toBeNull();
    expect(tokenRejectionOf(new Error("replayed"))).toBeNull();
  });
});

describe("daemonExposition", () => {
  it("merges the workers' reports into the primary's: counters summed, expiry by name, the audit gauge once", async () => {
    const clock = new ManualClock(new Date("2030-01-01T00:00:00Z"));
    const primary = new CaMetrics({ clock, defaultMetrics: false });
    const worker = new CaMetrics({ clock, defaultMetrics: false });
    primary.certificateIssued("bootstrap", "sign");
    worker.certificateIssued("bootstrap", "sign");
    worker.certificateIssued("k8s", "renew");
    primary.trackExpiry("api", () => new Date("2030-01-02T00:00:00Z"));
    primary.setAuditTreeSize(42, 40);
    const alone = parseExposition(await daemonExposition(primary, async () => []).render());
    expect(total(alone, "fleetca_certificates_issued_total")).toBe(1);
    const m = parseExposition(await daemonExposition(primary, async () => [await worker.report()]).render());
    expect(total(m, "fleetca_certificates_issued_total", { provisioner: "bootstrap", kind: "sign" })).toBe(2);
    expect(total(m, "fleetca_certificates_issued_total", { provisioner: "k8s", kind: "renew" })).toBe(1);
    expect(total(m, "fleetca_cert_expiry_seconds", { name: "api" })).toBe(86_400);
    expect(total(m, "fleetca_audit_tree_size")).toBe(42);
    expect(total(m, "fleetca_audit_signed_tree_size")).toBe(40);
  });
});

describe("OcspAnswerCounter", () => {
  it("hands its counts to fleetca_ocsp_responses_total at each scrape, once", async () => {
    const metrics = new CaMetrics({ clock: new ManualClock(new Date()), defaultMetrics: false });
    const counter = new OcspAnswerCounter(metrics);
    for (let i = 0; i < 3; i++) counter.count({ status: "good", source: "cached" });
    counter.count({ status: "revoked", source: "presigned" });
    counter.count({ status: "tryLater", source: "none" });
    counter.refused("malformedRequest");
    const scrape = async () => parseExposition(await metrics.registry.metrics());
    const first = await scrape();
    expect(total(first, "fleetca_ocsp_responses_total", { status: "good", source: "cached" })).toBe(3);
    expect(total(first, "fleetca_ocsp_responses_total", { status: "revoked", source: "presigned" })).toBe(1);
    expect(total(first, "fleetca_ocsp_responses_total", { status: "try_later", source: "none" })).toBe(1);
    expect(total(first, "fleetca_ocsp_responses_total", { status: "malformed", source: "none" })).toBe(1);
    expect(total(first, "fleetca_ocsp_responses_total")).toBe(6);
    counter.count({ status: "good", source: "cached" });
    const second = await scrape();
    expect(total(second, "fleetca_ocsp_responses_total", { status: "good", source: "cached" })).toBe(4);
    expect(total(second, "fleetca_ocsp_responses_total")).toBe(7);
  });
});
