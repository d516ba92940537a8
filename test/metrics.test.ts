import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "node:net";
import { CaWorkspace, type DaemonProcess } from "./harness/fleetca-process.js";
import { CaClient, type Issued } from "./harness/ca-client.js";
import { eventually } from "./harness/eventually.js";
import { postApi, signBody } from "./harness/http.js";
import { makeCsr, opensslAsync } from "./harness/openssl.js";
import { samples, scrape, total, type Sample } from "./harness/prometheus.js";
import { parseCertificateDer } from "../src/x509/certificate-info.js";

const PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";
const ISSUED = "fleetca_certificates_issued_total";
const TOKENS = "fleetca_token_verify_total";
const SIGNATURES = "fleetca_signatures_total";
const OCSP = "fleetca_ocsp_responses_total";
const HTTP = "fleetca_http_request_duration_seconds_count";

/** What the scripted flow did, to compare with what /metrics says. */
interface Flow {
  ca: CaClient;
  certs: Issued[];
  revoked: Issued;
  /** Every OCSP answer the flow received, by the status openssl read from it. */
  ocsp: Record<"good" | "revoked", number>;
  /** Of those, the "good" answers served between `fleetca revoke` and the revocation reaching OCSP. */
  goodWhileRevoking: number;
  intermediateKeyId: string;
}

/** Sends a plain-HTTP request to the TLS listener: the server sees a failed handshake. */
function failedHandshake(apiUrl: string): Promise<void> {
  const u = new URL(apiUrl);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname, () => s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    s.on("error", () => {});
    s.on("close", () => resolve());
    s.resume();
  });
}

/**
 * Three certificates and a fourth whose token is then replayed, one request with no token, a
 * renewal over mTLS, a record read, a failed TLS handshake, OCSP queries (pre-signed, again,
 * with a nonce, a malformed GET), `fleetca revoke` followed until OCSP and the CRL show it, one
 * CRL fetch, one unrouted path.
 */
async function scriptedFlow(ws: CaWorkspace, d: DaemonProcess, scrapeUrl: string): Promise<Flow> {
  const ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
  const certs = [await ca.issue("svc-a"), await ca.issue("svc-b"), await ca.issue("svc-c")];

  const token = await ws.token("replay", ["replay.internal"]);
  const csr = makeCsr(ws.dir, "replay");
  const first = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem) });
  expect(first.status, first.raw).toBe(201);
  const replay = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { token, body: signBody(csr.csrPem) });
  expect([replay.status, replay.body?.error, replay.body?.message]).toEqual([401, "unauthorized", "replayed"]);
  const none = await postApi(`${d.apiUrl}/v1/sign`, ca.roots, { body: signBody(csr.csrPem) });
  expect(none.status).toBe(401);

  const renewed = await ca.renew(certs[0]!.identity);
  expect(renewed.status, renewed.raw).toBe(201);
  // Not an admin: refused, and counted under the route's pattern, not the serial.
  expect((await ca.record(certs[1]!.identity, certs[1]!.serial)).status).toBe(403);
  await failedHandshake(d.apiUrl);

  const ocsp = { good: 0, revoked: 0 };
  const query = async (subject: Issued, extra: string[]) => {
    const r = await opensslAsync(["ocsp", "-timeout", "10", ...extra, "-issuer", ca.intermediatePath, "-cert", subject.certPath, "-url", `${d.publicUrl}/ocsp`, "-CAfile", ca.rootsPath]);
    expect(r.out).toContain("Response verify OK");
    const status = /: (good|revoked)\b/.exec(r.out)?.[1] as "good" | "revoked" | undefined;
    if (!status) throw new Error(`no OCSP status: ${r.out}`);
    ocsp[status]++;
    return status;
  };
  const target = certs[2]!;
  expect(await query(target, ["-no_nonce"])).toBe("good");
  expect(await query(target, ["-no_nonce"])).toBe("good");
  expect(await query(target, [])).toBe("good");
  expect((await fetch(`${d.publicUrl}/ocsp/!!!!`)).headers.get("content-type")).toBe("application/ocsp-response");

  const goodBefore = ocsp.good;
  const revoke = await ws.cli(["revoke", target.serial]);
  expect(revoke.code, revoke.stderr).toBe(0);
  // SPEC: within 5 s; every answer on the way counts.
  await eventually(5_000, "OCSP says revoked", () => query(target, ["-no_nonce"]), (s) => s === "revoked");
  await eventually(5_000, "the CRL lists the revocation", () => scrape(scrapeUrl), (m) => total(m.samples, "fleetca_crl_entries") === 1);

  expect((await fetch(`${d.publicUrl}/crl`)).status).toBe(200);
  expect((await fetch(`${d.publicUrl}/no-such-path/${certs[1]!.serial}`)).status).toBe(404);
  const intermediateKeyId = Buffer.from(parseCertificateDer(ca.intermediateDer).info.subjectKeyId!).toString("hex");
  return { ca, certs, revoked: target, ocsp, goodWhileRevoking: ocsp.good - goodBefore, intermediateKeyId };
}

/** Every metric of issue 14 with the values the flow must have left; `oneProcess` adds what only a single process makes exact. */
function expectFlowCounted(m: Sample[], flow: Flow, oneProcess: boolean): void {
  const key = flow.intermediateKeyId.slice(0, 16);
  // Issuance: four with a token, one renewal (the API's own serving certificate is not a host's).
  expect(samples(m, ISSUED).map((s) => [s.labels, s.value])).toEqual(
    expect.arrayContaining([
      [{ provisioner: "bootstrap", kind: "sign" }, 4],
      [{ provisioner: "bootstrap", kind: "renew" }, 1],
    ]),
  );
  expect(total(m, ISSUED)).toBe(5);
  // Tokens: the four that paid, the replay, the missing one.
  expect(total(m, TOKENS, { result: "ok", reason: "" })).toBe(4);
  expect(total(m, TOKENS, { result: "refused", reason: "replayed" })).toBe(1);
  expect(total(m, TOKENS, { result: "refused", reason: "missing_token" })).toBe(1);
  expect(total(m, TOKENS)).toBe(6);
  // Signatures by the intermediate: 5 leaves + the serving certificate; one per CRL built; OCSP's.
  expect(new Set(samples(m, SIGNATURES).map((s) => s.labels.key))).toEqual(new Set([key]));
  expect(total(m, SIGNATURES, { key, purpose: "certificate" })).toBe(6);
  expect(total(m, SIGNATURES, { key, purpose: "crl" })).toBe(total(m, "fleetca_crl_generation_seconds_count"));
  expect(total(m, "fleetca_crl_generation_seconds_count")).toBeGreaterThanOrEqual(1);
  expect(total(m, SIGNATURES, { key, purpose: "ocsp" })).toBeGreaterThanOrEqual(1);
  // OCSP: exactly the answers openssl read, by status, and the malformed GET.
  expect(total(m, OCSP, { status: "good" })).toBe(flow.ocsp.good);
  expect(total(m, OCSP, { status: "revoked" })).toBe(flow.ocsp.revoked);
  expect(total(m, OCSP, { status: "malformed", source: "none" })).toBe(1);
  expect(total(m, OCSP)).toBe(flow.ocsp.good + flow.ocsp.revoked + 1);
  expect(total(m, OCSP, { status: "good", source: "signed" })).toBe(1);
  if (oneProcess) {
    // The first no-nonce query is answered pre-signed; the same bytes again from memory, until
    // the revocation reaches OCSP.
    expect(total(m, OCSP, { status: "good", source: "presigned" })).toBe(1);
    expect(total(m, OCSP, { status: "good", source: "cached" })).toBe(1 + flow.goodWhileRevoking);
  }
  // CRL: the revoked certificate is the one entry.
  expect(samples(m, "fleetca_crl_entries").map((s) => [s.labels, s.value])).toEqual([[{ issuer: key }, 1]]);
  // Expiry: the root, the intermediate and the API's serving certificate (24 h).
  const expiry = Object.fromEntries(samples(m, "fleetca_cert_expiry_seconds").map((s) => [s.labels.name, s.value]));
  const names = Object.keys(expiry);
  expect(names).toHaveLength(3);
  expect(names).toEqual(expect.arrayContaining(["api", `intermediate:${key}`, expect.stringMatching(/^root:[0-9a-f]{16}$/)]));
  expect(expiry.api).toBeGreaterThan(23 * 3600);
  expect(expiry.api).toBeLessThanOrEqual(24 * 3600 + 60);
  expect(expiry[`intermediate:${key}`]).toBeGreaterThan(300 * 24 * 3600);
  // TLS: the plain-HTTP request failed its handshake; the rest completed theirs.
  expect(total(m, "fleetca_tls_handshakes_total", { result: "failed" })).toBe(1);
  expect(total(m, "fleetca_tls_handshakes_total", { result: "ok" })).toBeGreaterThanOrEqual(3);
  // Requests by route pattern, never by URL.
  expect(total(m, HTTP, { route: "/v1/sign", method: "POST", status: "201" })).toBe(4);
  expect(total(m, HTTP, { route: "/v1/sign", method: "POST", status: "401" })).toBe(2);
  expect(total(m, HTTP, { route: "/v1/renew", method: "POST", status: "201" })).toBe(1);
  expect(total(m, HTTP, { route: "/v1/certs/:serial", method: "GET", status: "403" })).toBe(1);
  expect(total(m, HTTP, { route: "/roots.pem", method: "GET", status: "200" })).toBe(1);
  expect(total(m, HTTP, { route: "/intermediate.crt", method: "GET", status: "200" })).toBe(1);
  expect(total(m, HTTP, { route: "/crl", method: "GET", status: "200" })).toBe(1);
  expect(total(m, HTTP, { route: "unmatched", method: "GET", status: "404" })).toBe(1);
  const labelValues = m.flatMap((s) => Object.values(s.labels));
  for (const c of [...flow.certs, flow.revoked]) expect(labelValues.join(" ")).not.toContain(c.serial);
  expect(samples(m, HTTP).filter((s) => s.labels.route!.includes("ocsp"))).toEqual([]);
  // The audit log's gauge is there for its owner to set; Node's process metrics under their usual names.
  // Both set by the tree head publisher at start: the head signed then covers the whole log.
  expect(samples(m, "fleetca_audit_tree_size")).toHaveLength(1);
  expect(total(m, "fleetca_audit_signed_tree_size")).toBeGreaterThan(0);
  expect(total(m, "fleetca_audit_signed_tree_size")).toBeLessThanOrEqual(total(m, "fleetca_audit_tree_size"));
  expect(total(m, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
  expect(total(m, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
}

describe("GET /metrics on the public listener (one process)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let flow: Flow;

  beforeAll(async () => {
    ws = new CaWorkspace();
    d = await ws.start();
    flow = await scriptedFlow(ws, d, `${d.publicUrl}/metrics`);
  }, 90_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("serves the Prometheus text format with the registry's Content-Type", async () => {
    const r = await scrape(`${d.publicUrl}/metrics`);
    expect(r.status).toBe(200);
    expect(r.contentType).toBe(PROMETHEUS_TEXT);
    expect(r.text).toMatch(/^# HELP fleetca_certificates_issued_total .+\n# TYPE fleetca_certificates_issued_total counter$/m);
    expect(r.text).toMatch(/^# TYPE fleetca_http_request_duration_seconds histogram$/m);
  });

  it("counts every step of the scripted flow, by the labels issue 14 names", async () => {
    expectFlowCounted((await scrape(`${d.publicUrl}/metrics`)).samples, flow, true);
  });

  it("on SQLite: the storage probe says up; no lease series (one process writes every CRL, no leases), no revocation notifications", async () => {
    const r = await scrape(`${d.publicUrl}/metrics`);
    expect(r.text).toMatch(/^fleetca_storage_up 1$/m);
    expect(r.text).toMatch(/^# TYPE fleetca_storage_up gauge$/m);
    expect(r.text).not.toContain("fleetca_leases_held");
    // LISTEN/NOTIFY is PostgreSQL's: SQLite has no such session to report on.
    expect(r.text).not.toContain("fleetca_revocation_notifications_up");
  });
});

describe("GET /metrics with workers (listen.publicWorkers: 2, apiWorkers: 2): any process answers for the whole daemon", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  let flow: Flow;

  beforeAll(async () => {
    ws = new CaWorkspace({ listen: "publicWorkers: 2, apiWorkers: 2" });
    d = await ws.start();
    flow = await scriptedFlow(ws, d, `${d.publicUrl}/metrics`);
  }, 120_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("merges the primary's and both workers' counters on every scrape, whichever worker serves it", async () => {
    // A new connection each: node:cluster hands successive scrapes to each worker in turn.
    for (let i = 0; i < 4; i++) {
      const r = await scrape(`${d.publicUrl}/metrics`);
      expect(r.status).toBe(200);
      expect(r.contentType).toBe(PROMETHEUS_TEXT);
      expectFlowCounted(r.samples, flow, false);
    }
  });

  it("merges Node's process metrics by prom-client's own aggregators (event-loop lag averaged, start time left out)", async () => {
    const m = (await scrape(`${d.publicUrl}/metrics`)).samples;
    // Three processes' event loops, merged: the gauges prom-client averages stay single series.
    expect(samples(m, "nodejs_eventloop_lag_seconds")).toHaveLength(1);
    expect(samples(m, "process_start_time_seconds")).toHaveLength(0);
  });

  it("fleetca_storage_up comes through the merge as one series, the primary probe's 1, whichever process serves the scrape", async () => {
    for (let i = 0; i < 3; i++) {
      const m = (await scrape(`${d.publicUrl}/metrics`)).samples;
      expect(samples(m, "fleetca_storage_up")).toEqual([{ name: "fleetca_storage_up", labels: {}, value: 1 }]);
    }
  });
});

describe("listen.metrics: /metrics on a listener of its own (with publicWorkers: 2, whose counters it merges)", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;

  beforeAll(async () => {
    ws = new CaWorkspace({ listen: 'metrics: "127.0.0.1:0", publicWorkers: 2' });
    d = await ws.start();
  }, 60_000);

  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("serves /metrics there, with the workers' OCSP answers, and no longer on the public listener", async () => {
    const url = /msg="metrics listening" url=(\S+)/.exec(d.output)?.[1];
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const ca = await new CaClient(ws, d.apiUrl, d.publicUrl).init();
    const svc = await ca.issue("svc");
    for (let i = 0; i < 2; i++) {
      const o = await opensslAsync(["ocsp", "-timeout", "10", "-issuer", ca.intermediatePath, "-cert", svc.certPath, "-url", `${d.publicUrl}/ocsp`, "-CAfile", ca.rootsPath]);
      expect(o.out).toMatch(/: good/);
    }
    const r = await scrape(url!);
    expect([r.status, r.contentType]).toEqual([200, PROMETHEUS_TEXT]);
    expect(total(r.samples, ISSUED, { provisioner: "bootstrap", kind: "sign" })).toBe(1);
    expect(total(r.samples, OCSP, { status: "good", source: "signed" })).toBe(2);
    expect(total(r.samples, HTTP, { route: "/roots.pem", method: "GET", status: "200" })).toBe(1);
    // Both workers answer 404 on the public listener.
    for (let i = 0; i < 2; i++) {
      const pub = await fetch(`${d.publicUrl}/metrics`, { headers: { connection: "close" } });
      expect([pub.status, ((await pub.json()) as { error: string }).error]).toEqual([404, "not_found"]);
    }
    const other = await fetch(url!.replace(/\/metrics$/, "/healthz"));
    expect(other.status).toBe(404);
  });
});
