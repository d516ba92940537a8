import { request as httpsReq } from "node:https";
import { request as httpReq } from "node:http";
import { AgentError } from "./errors.js";

export interface HttpAnswer {
  status: number;
  body: Buffer;
}

export interface RequestOptions {
  method: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** PEM trust anchors; the only ones used (the system store is never consulted). */
  ca?: string;
  /** Skip server verification: only for the one pinned-fingerprint bootstrap fetch. */
  insecure?: boolean;
  /** Client certificate (leaf + chain PEM) and key for mTLS (RFC 8446 §4.4.2). */
  cert?: string;
  key?: string;
  timeoutMs?: number;
}

/** One HTTP(S) request with node's own client, so trust anchors and client certs are explicit. */
export function httpsRequest(url: string, o: RequestOptions): Promise<HttpAnswer> {
  const u = new URL(url);
  const isHttps = u.protocol === "https:";
  return new Promise((resolve, reject) => {
    const opts = {
      method: o.method,
      headers: { ...(o.headers ?? {}), ...(o.body !== undefined ? { "content-length": String(Buffer.byteLength(o.body)) } : {}) },
      timeout: o.timeoutMs ?? 15_000,
      ...(isHttps
        ? {
            rejectUnauthorized: !o.insecure,
            ...(o.ca !== undefined && { ca: o.ca }),
            ...(o.cert !== undefined && { cert: o.cert }),
            ...(o.key !== undefined && { key: o.key }),
            // No connection reuse: each request's trust and client identity stand alone.
            agent: false as const,
          }
        : {}),
    };
    const req = (isHttps ? httpsReq : httpReq)(u, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`timed out after ${o.timeoutMs ?? 15_000} ms`)));
    req.on("error", (e) => reject(new AgentError(`cannot reach ${u.origin}: ${e.message}`)));
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

/** The answer of /v1/sign and /v1/renew (SPEC endpoints table). */
export interface SignAnswer {
  serial: string;
  certificate: string;
  /** Intermediates only. */
  chain: string;
  notBefore: string;
  notAfter: string;
}

function parseAnswer(what: string, r: HttpAnswer): SignAnswer {
  const text = r.body.toString("utf8");
  if (r.status !== 201) {
    // The CA's reason (SPEC error shape {"error","message"}) is the useful part for the operator.
    let reason = text.slice(0, 300);
    try {
      const j = JSON.parse(text) as { error?: string; message?: string };
      reason = [j.error, j.message].filter(Boolean).join(": ");
    } catch {
      /* not JSON: keep the raw text */
    }
    throw new AgentError(`${what} refused by the CA (HTTP ${r.status}): ${reason}`, r.status);
  }
  const j = JSON.parse(text) as SignAnswer;
  if (typeof j.certificate !== "string" || typeof j.chain !== "string") throw new AgentError(`${what}: malformed answer from the CA`);
  return j;
}

/** Talks to the CA's API listener, trusting only the pinned roots. */
export class CaApi {
  constructor(
    private readonly caUrl: string,
    private readonly roots: string,
  ) {}

  /** POST /v1/sign with a bearer token (the token is only ever sent in this header). */
  async sign(csrPem: string, token: string, idempotencyKey?: string): Promise<SignAnswer> {
    const r = await httpsRequest(`${this.caUrl}/v1/sign`, {
      method: "POST",
      ca: this.roots,
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${token}`,
        ...(idempotencyKey !== undefined && { "idempotency-key": idempotencyKey }),
      },
      body: JSON.stringify({ csr: csrPem }),
    });
    return parseAnswer("enrollment (/v1/sign)", r);
  }

  /** POST /v1/renew authenticated by the current cert over mTLS, rekeying with a new CSR. */
  async renew(csrPem: string, current: { certAndChain: string; key: string }): Promise<SignAnswer> {
    const r = await httpsRequest(`${this.caUrl}/v1/renew`, {
      method: "POST",
      ca: this.roots,
      cert: current.certAndChain,
      key: current.key,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ csr: csrPem }),
    });
    return parseAnswer("renewal (/v1/renew)", r);
  }
}
