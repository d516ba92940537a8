import { request } from "node:https";

export interface ApiResponse {
  status: number;
  body: any;
  raw: string;
}

/** POSTs to the HTTPS API trusting only the CA's own roots, as a real client would. */
export function postApi(
  url: string,
  roots: string,
  opts: { token?: string; body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        ca: roots,
        headers: {
          "content-type": "application/json",
          ...(opts.token !== undefined && { authorization: `Bearer ${opts.token}` }),
          ...opts.headers,
        },
      },
      (res) => {
        let raw = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (raw += d));
        res.on("end", () => {
          let body: unknown = null;
          try {
            body = JSON.parse(raw);
          } catch {
            body = null;
          }
          resolve({ status: res.statusCode ?? 0, body, raw });
        });
      },
    );
    req.on("error", reject);
    req.end(opts.body ?? "");
  });
}

export function signBody(csrPem: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ csr: csrPem, ...extra });
}

export async function fetchRoots(publicUrl: string): Promise<string> {
  const r = await fetch(`${publicUrl}/roots.pem`);
  if (r.status !== 200) throw new Error(`roots.pem: ${r.status}`);
  return r.text();
}

/** A client certificate for an mTLS request: PEM key and certificate (optionally + chain). */
export interface ClientIdentity {
  key: string | Buffer;
  cert: string | Buffer;
}

/**
 * A request to the HTTPS API presenting a client certificate (or none), trusting only the CA's
 * roots. A fresh connection per call (agent: false) so one test's TLS identity never leaks into
 * another's through a pooled socket.
 */
export function mtlsRequest(
  url: string,
  roots: string,
  opts: { method?: "GET" | "POST"; identity?: ClientIdentity; body?: string } = {},
): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: opts.method ?? "POST",
        ca: roots,
        agent: false,
        ...(opts.identity && { key: opts.identity.key, cert: opts.identity.cert }),
        headers: opts.body !== undefined ? { "content-type": "application/json" } : {},
      },
      (res) => {
        let raw = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (raw += d));
        res.on("end", () => {
          let body: unknown = null;
          try {
            body = JSON.parse(raw);
          } catch {
            body = null;
          }
          resolve({ status: res.statusCode ?? 0, body, raw });
        });
      },
    );
    req.on("error", reject);
    req.end(opts.body ?? "");
  });
}
