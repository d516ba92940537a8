import { get as httpGet, type IncomingHttpHeaders } from "node:http";
import { request, type RequestOptions } from "node:https";

export interface ApiResponse {
  status: number;
  body: any;
  raw: string;
  /** Response headers, where the caller kept them (postApi, mtlsRequest). */
  headers?: IncomingHttpHeaders;
}

/** POSTs to the HTTPS API trusting only the CA's own roots, as a real client would. */
export function postApi(
  url: string,
  roots: string,
  /** `localAddress`: the client address the request comes from (e.g. 127.0.0.2: all of 127/8 is loopback on Linux). */
  opts: { token?: string; body?: string | Buffer; headers?: Record<string, string>; localAddress?: string } = {},
): Promise<ApiResponse> {
  return send(url, {
    method: "POST",
    ca: roots,
    ...(opts.localAddress !== undefined && { localAddress: opts.localAddress, agent: false }),
    headers: {
      "content-type": "application/json",
      ...(opts.token !== undefined && { authorization: `Bearer ${opts.token}` }),
      ...opts.headers,
    },
  }, opts.body);
}

/** One HTTPS request; the body is parsed as JSON when it is JSON. */
function send(url: string, options: RequestOptions, body?: string | Buffer): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, options, (res) => {
      let raw = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (raw += d));
      res.on("end", () => {
        let parsed: unknown = null;
        try {
          parsed = JSON.parse(raw);
        } catch {
          parsed = null;
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, raw, headers: res.headers });
      });
    });
    req.on("error", reject);
    req.end(body ?? "");
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
  return send(
    url,
    {
      method: opts.method ?? "POST",
      ca: roots,
      agent: false,
      ...(opts.identity && { key: opts.identity.key, cert: opts.identity.cert }),
      headers: opts.body !== undefined ? { "content-type": "application/json" } : {},
    },
    opts.body,
  );
}

/**
 * A revalidation as an HTTP cache makes it, answering only the status. Not fetch(): the Fetch
 * standard turns a request with If-None-Match into a no-cache one, which a server must answer in full.
 */
export function conditionalGetStatus(url: string, etag: string): Promise<number> {
  return new Promise((resolve, reject) => {
    httpGet(url, { headers: { "if-none-match": etag } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on("error", reject);
  });
}
