/**
 * cert-agent's Prometheus exposition (text format 0.0.4): syntax checked line by line against the
 * format's grammar, values following the calls and the injected clock, served over real HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "node:http";
import { ManualClock } from "../src/core/clock.js";
import { AgentMetrics, parseListenAddress, type MetricsListener } from "../src/agent/agent-metrics.js";

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const VALUE = "(?:[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|[+-]Inf|NaN)";
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(${LABEL}(?:,${LABEL})*)\\})? (${VALUE})$`);

interface Family {
  help: string;
  type: string;
  samples: { labels: Record<string, string>; value: number }[];
}

/**
 * A strict reader of the text format: every line is HELP, TYPE or a sample; HELP and TYPE come
 * once per family, before its samples; samples of a family are contiguous; the text ends in "\n".
 */
function parseExposition(text: string): Map<string, Family> {
  expect(text.endsWith("\n"), "exposition ends with a newline").toBe(true);
  const families = new Map<string, Family>();
  let current: string | undefined;
  for (const line of text.slice(0, -1).split("\n")) {
    const help = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line);
    const type = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
    if (help) {
      expect(families.has(help[1]!), `one HELP for ${help[1]}`).toBe(false);
      families.set(help[1]!, { help: help[2]!.replace(/\\n/g, "\n").replace(/\\\\/g, "\\"), type: "", samples: [] });
      current = help[1];
      continue;
    }
    if (type) {
      expect(type[1], "TYPE follows its HELP").toBe(current);
      expect(families.get(type[1]!)!.type, `one TYPE for ${type[1]}`).toBe("");
      families.get(type[1]!)!.type = type[2]!;
      continue;
    }
    const s = SAMPLE.exec(line);
    expect(s, `not a valid sample line: ${JSON.stringify(line)}`).not.toBeNull();
    const name = s![1]!;
    expect(name, "samples stay in their family, after HELP and TYPE").toBe(current);
    expect(families.get(name)!.type).not.toBe("");
    const labels: Record<string, string> = {};
    for (const m of (s![2] ?? "").matchAll(new RegExp(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\]|\\\\.)*)"`, "g"))) {
      labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const v = s![3]!;
    families.get(name)!.samples.push({ labels, value: v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v) });
  }
  return families;
}

const value = (f: Map<string, Family>, name: string, labels: Record<string, string> = {}) =>
  f.get(name)?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

describe("AgentMetrics exposition", () => {
  it("before anything happened: up, zeroed counters for every label pair, no made-up certificate", () => {
    const f = parseExposition(new AgentMetrics(new ManualClock()).render());
    expect(value(f, "certagent_up")).toBe(1);
    expect(f.get("certagent_up")!.type).toBe("gauge");
    expect(f.get("certagent_renewals_total")!.type).toBe("counter");
    expect(f.get("certagent_renewals_total")!.samples).toHaveLength(4);
    for (const result of ["ok", "error"]) {
      for (const via of ["sign", "renew"]) expect(value(f, "certagent_renewals_total", { result, via })).toBe(0);
      expect(value(f, "certagent_ocsp_refresh_total", { result })).toBe(0);
    }
    expect(f.has("certagent_cert_expiry_seconds")).toBe(false);
    expect(f.has("certagent_last_success_timestamp_seconds")).toBe(false);
  });

  it("values follow the calls; expiry seconds follow the injected clock at each scrape", () => {
    const t0 = new Date("2026-03-01T00:00:00Z");
    const clock = new ManualClock(t0);
    const m = new AgentMetrics(clock);
    const notAfter = new Date(t0.getTime() + 24 * 3_600_000);
    m.certificate("0a1b2c", notAfter);
    m.renewal("error", "sign");
    m.renewal("ok", "sign");
    m.renewal("ok", "renew");
    m.renewal("ok", "renew");
    m.ocspRefresh("ok");
    m.ocspRefresh("error");
    m.ocspRefresh("ok");
    m.success(new Date(t0.getTime() + 1_500));

    let f = parseExposition(m.render());
    expect(value(f, "certagent_cert_info", { serial: "0a1b2c" })).toBe(1);
    expect(value(f, "certagent_cert_expiry_timestamp_seconds")).toBe(notAfter.getTime() / 1000);
    expect(value(f, "certagent_cert_expiry_seconds")).toBe(24 * 3600);
    expect(value(f, "certagent_renewals_total", { result: "ok", via: "sign" })).toBe(1);
    expect(value(f, "certagent_renewals_total", { result: "error", via: "sign" })).toBe(1);
    expect(value(f, "certagent_renewals_total", { result: "ok", via: "renew" })).toBe(2);
    expect(value(f, "certagent_renewals_total", { result: "error", via: "renew" })).toBe(0);
    expect(value(f, "certagent_ocsp_refresh_total", { result: "ok" })).toBe(2);
    expect(value(f, "certagent_ocsp_refresh_total", { result: "error" })).toBe(1);
    expect(value(f, "certagent_last_success_timestamp_seconds")).toBe(t0.getTime() / 1000 + 1.5);

    clock.advance(23 * 3_600_000 + 500);
    f = parseExposition(m.render());
    expect(value(f, "certagent_cert_expiry_seconds")).toBe(3599.5);
    clock.advance(3_600_000);
    expect(value(parseExposition(m.render()), "certagent_cert_expiry_seconds")).toBe(-0.5);
    // The timestamp gauge does not move with the clock.
    expect(value(parseExposition(m.render()), "certagent_cert_expiry_timestamp_seconds")).toBe(notAfter.getTime() / 1000);

    // A renewal replaces the certificate: one info series, the new serial.
    m.certificate("ff00", new Date(clock.now().getTime() + 3_600_000));
    f = parseExposition(m.render());
    expect(f.get("certagent_cert_info")!.samples).toEqual([{ labels: { serial: "ff00" }, value: 1 }]);
    expect(value(f, "certagent_cert_expiry_seconds")).toBe(3600);
  });

  it("escapes label values (backslash, quote, newline) as the format requires", () => {
    const m = new AgentMetrics(new ManualClock());
    const odd = 'a\\b"c\nd';
    m.certificate(odd, new Date());
    const text = m.render();
    expect(text).toContain('certagent_cert_info{serial="a\\\\b\\"c\\nd"} 1\n');
    expect(value(parseExposition(text), "certagent_cert_info")).toBe(1);
    expect(parseExposition(text).get("certagent_cert_info")!.samples[0]!.labels.serial).toBe(odd);
  });
});

describe("--metrics-listen", () => {
  it("parses HOST:PORT, [IPv6]:PORT and :PORT; refuses anything else", () => {
    expect(parseListenAddress("127.0.0.1:9101")).toEqual({ host: "127.0.0.1", port: 9101 });
    expect(parseListenAddress("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseListenAddress(":9101")).toEqual({ host: undefined, port: 9101 });
    expect(parseListenAddress("localhost:9101")).toEqual({ host: "localhost", port: 9101 });
    for (const bad of ["9101", "127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "::1:9101", "a:b"]) {
      expect(() => parseListenAddress(bad), bad).toThrow(/--metrics-listen must be HOST:PORT/);
    }
  });

  describe("over real HTTP", () => {
    const clock = new ManualClock(new Date("2026-03-01T00:00:00Z"));
    const m = new AgentMetrics(clock);
    let l: MetricsListener;
    beforeAll(async () => {
      l = await m.listen("127.0.0.1:0");
    });
    afterAll(async () => {
      await l?.close();
    });

    const get = (path: string, method = "GET") =>
      new Promise<{ status: number; type: string | undefined; body: string }>((resolve, reject) => {
        const req = request(`http://${l.address}${path}`, { method }, (res) => {
          let body = "";
          res.on("data", (d: Buffer) => (body += d.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], body }));
        });
        req.on("error", reject);
        req.end();
      });

    it("binds the asked host with a real port when given port 0", () => {
      expect(l.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(l.address).not.toBe("127.0.0.1:0");
    });

    it("GET /metrics: 200, text/plain version 0.0.4, the current values", async () => {
      m.renewal("ok", "sign");
      m.certificate("abcd", new Date(clock.now().getTime() + 60_000));
      const r = await get("/metrics");
      expect(r.status).toBe(200);
      expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
      const f = parseExposition(r.body);
      expect(value(f, "certagent_renewals_total", { result: "ok", via: "sign" })).toBe(1);
      expect(value(f, "certagent_cert_expiry_seconds")).toBe(60);
      clock.advance(30_000);
      expect(value(parseExposition((await get("/metrics?x=1")).body), "certagent_cert_expiry_seconds")).toBe(30);
    });

    it("404 for any other path, 405 for another method", async () => {
      expect((await get("/")).status).toBe(404);
      expect((await get("/metrics/x")).status).toBe(404);
      expect((await get("/healthz")).status).toBe(404);
      expect((await get("/metrics", "POST")).status).toBe(405);
    });

    it("a port already taken is an operator error, not a crash", async () => {
      await expect(m.listen(l.address)).rejects.toThrow(/--metrics-listen .*cannot listen \(EADDRINUSE\)/);
    });
  });
});
