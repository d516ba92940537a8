import { request as httpsReq } from "node:https";
import { request as httpReq, type IncomingHttpHeaders } from "node:http";
import { AgentError, type AgentErrorCode } from "./errors.js";

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
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
  /**
   * Largest response body accepted (default 1 MiB). Every answer the agent expects (a cert and
   * its chain, a roots bundle, an OCSP response) is a few KiB; a CA, proxy or impostor streaming
   * more is refused rather than buffered without bound.
   */
  maxBodyBytes?: number;
}

export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

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
    const cap = o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const tooLarge = () => new AgentError(`${u.origin}${u.pathname} answered with a body over ${cap} bytes; refused`, "bad_answer");
    const req = (isHttps ? httpsReq : httpReq)(u, opts, (res) => {
      // Refuse early on a declared length, else count as it streams; either way stop reading.
      const declared = Number(res.headers["content-length"]);
      if (Number.isFinite(declared) && declared > cap) {
        reject(tooLarge());
        req.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > cap) {
          reject(tooLarge());
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", (e) => reject(new AgentError(`lost the connection to ${u.origin}: ${e.message}`, "unreachable")));
    });
    req.on("timeout", () => req.destroy(new Error(`timed out after ${o.timeoutMs ?? 15_000} ms`)));
    // A settled promise ignores later rejections, so the destroy() above cannot mislabel a refusal.
    req.on("error", (e) => reject(new AgentError(`cannot reach ${u.origin}: ${e.message}`, "unreachable")));
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

/** The SPEC error body: `{"error": CODE, "message": TEXT}`; for 401 the message starts with the reason. */
interface CaErrorBody {
  error?: string;
  message?: string;
}

/** Retry-After in delay-seconds form (RFC 9110 §10.2.3); the HTTP-date form is not used by the CA. */
function retryAfterMs(r: HttpAnswer): number | undefined {
  const v = r.headers["retry-after"];
  const n = typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  return Number.isFinite(n) ? n * 1000 : undefined;
}

/**
 * The code for a refusal, from the HTTP status and the CA's `error` code (SPEC "HTTP API"). For a
 * 401 the reason is the first word of `message` (SPEC: "message names the reason"): `replayed`
 * for a spent token, `revoked`/`unknown_certificate`/`expired` for a client cert.
 */
export function refusalCode(endpoint: "sign" | "renew", status: number, body: CaErrorBody | null): AgentErrorCode {
  if (status >= 500 || status === 429) return "ca_error";
  const reason = body?.message?.split(":")[0]?.trim();
  if (endpoint === "sign") {
    if (status === 401 && body?.error === "unauthorized" && reason === "replayed") return "token_spent";
    if (status === 401 || status === 403) return "token_refused";
  }
  // A 401 on /v1/renew: the CA does not accept this cert as a credential (revoked, unknown,
  // expired by its clock, not yet valid). Whatever the reason, only the token can get a new one.
  if (endpoint === "renew" && status === 401) return "cert_refused";
  // A 403 naming a provisioner's renewal rule (issue 15): the chain of renewals has ended (its
  // provisioner is gone or forbids renewal, maxRenewalAge passed, another renewal superseded it).
  // The provisioner wants a fresh attestation: the token, at once.
  if (endpoint === "renew" && status === 403 && reason !== undefined && ATTEST_AGAIN.has(reason)) return "cert_refused";
  if (status >= 400 && status < 500) return "bad_request";
  return "bad_answer"; // 1xx/2xx other than 201, 3xx: not what the API answers
}

/** 403 reasons on /v1/renew that only a new token can answer (registration/provisioner-lifecycle.ts). */
const ATTEST_AGAIN = new Set(["provisioner_removed", "renewal_not_allowed", "renewal_age_exceeded", "superseded"]);

/** What the operator can do about it, appended to the one-line message. */
const ADVICE: Partial<Record<AgentErrorCode, string>> = {
  token_spent: "the token in --token-file was already used: put a new token there",
  token_refused: "the token in --token-file was refused: put a valid token there",
  cert_refused: "the current certificate cannot renew: re-attest with the token in --token-file",
};

function parseAnswer(endpoint: "sign" | "renew", r: HttpAnswer): SignAnswer {
  const what = endpoint === "sign" ? "enrollment (/v1/sign)" : "renewal (/v1/renew)";
  const text = r.body.toString("utf8");
  if (r.status !== 201) {
    // The CA's reason (SPEC error shape {"error","message"}) is the useful part for the operator.
    let body: CaErrorBody | null = null;
    let reason = text.slice(0, 300);
    try {
      const j = JSON.parse(text) as unknown;
      if (j && typeof j === "object") {
        body = j as CaErrorBody;
        reason = [body.error, body.message].filter((x) => typeof x === "string" && x).join(": ");
      }
    } catch {
      /* not JSON (a proxy's page): keep the raw text */
    }
    const code = refusalCode(endpoint, r.status, body);
    const advice = ADVICE[code];
    throw new AgentError(`${what} refused by the CA (HTTP ${r.status}): ${reason}${advice ? `; ${advice}` : ""}`, code, r.status, retryAfterMs(r));
  }
  let j: SignAnswer;
  try {
    j = JSON.parse(text) as SignAnswer;
  } catch {
    throw new AgentError(`${what}: the CA's answer is not JSON`, "bad_answer");
  }
  if (!j || typeof j.certificate !== "string" || typeof j.chain !== "string") throw new AgentError(`${what}: malformed answer from the CA`, "bad_answer");
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
    return parseAnswer("sign", r);
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
    return parseAnswer("renew", r);
  }
}
