import { expect } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toPem } from "../../src/x509/pem.js";
import type { CaWorkspace } from "./fleetca-process.js";
import { fetchRoots, mtlsRequest, postApi, signBody, type ApiResponse, type ClientIdentity } from "./http.js";
import { makeCsr } from "./openssl.js";

/** The answer of /v1/sign or /v1/renew, as the API sends it. */
export type SignAnswer = Pick<Issued, "serial" | "certificate" | "chain" | "notBefore" | "notAfter">;

/** An issued certificate as its host keeps it: the API's answer, the files on disk, the mTLS identity. */
export interface Issued {
  serial: string;
  certificate: string;
  chain: string;
  notBefore: string;
  notAfter: string;
  /** `${name}.crt` in the workspace. */
  certPath: string;
  /** `${name}.chain.pem` in the workspace: what `openssl verify -untrusted` needs. */
  chainPath: string;
  keyPath: string;
  /** The key and certificate + chain, for presenting over mTLS. */
  identity: ClientIdentity;
}

/**
 * A workspace's CA reached the way a host and a relying party reach it: trust material from the
 * public listener (roots.pem and intermediate.pem written into the workspace), certificates from
 * /v1/sign with a token, then renewal, revocation and records over mTLS.
 */
export class CaClient {
  roots = "";
  rootsPath = "";
  intermediateDer = Buffer.alloc(0);
  intermediatePem = "";
  intermediatePath = "";

  constructor(
    readonly ws: CaWorkspace,
    readonly apiUrl: string,
    readonly publicUrl: string,
    /** Extra `token create` args (the in-process daemon's audience). */
    readonly tokenArgs: string[] = [],
  ) {}

  /** Fetches the roots and the intermediate from the public listener and writes them to disk. */
  async init(): Promise<this> {
    this.roots = await fetchRoots(this.publicUrl);
    this.rootsPath = join(this.ws.dir, "roots.pem");
    writeFileSync(this.rootsPath, this.roots);
    this.intermediateDer = Buffer.from(await (await fetch(`${this.publicUrl}/intermediate.crt`)).arrayBuffer());
    this.intermediatePem = toPem(this.intermediateDer, "CERTIFICATE");
    this.intermediatePath = join(this.ws.dir, "intermediate.pem");
    writeFileSync(this.intermediatePath, this.intermediatePem);
    return this;
  }

  /**
   * A fresh key and CSR signed through /v1/sign with a one-off token; must answer 201.
   * `tokenArgs`: more `token create` args for this one (e.g. `--admin` for an admin SAN).
   */
  async issue(name: string, sans: string[] = [`${name}.internal`], extraBody: Record<string, unknown> = {}, tokenArgs: string[] = []): Promise<Issued> {
    const token = await this.ws.token(name, sans, [...this.tokenArgs, ...tokenArgs]);
    const csr = makeCsr(this.ws.dir, name);
    const r = await postApi(`${this.apiUrl}/v1/sign`, this.roots, { token, body: signBody(csr.csrPem, extraBody) });
    expect(r.status, r.raw).toBe(201);
    return this.keep(name, r.body, csr.keyPath);
  }

  /** Stores a /v1/sign or /v1/renew answer as `${name}.crt` and `${name}.chain.pem`, with the key that goes with it. */
  keep(name: string, body: SignAnswer, keyPath: string): Issued {
    const certPath = join(this.ws.dir, `${name}.crt`);
    const chainPath = join(this.ws.dir, `${name}.chain.pem`);
    writeFileSync(certPath, body.certificate);
    writeFileSync(chainPath, body.chain);
    const key = readFileSync(keyPath, "utf8");
    return { ...body, certPath, chainPath, keyPath, identity: { key, cert: body.certificate + body.chain } };
  }

  /** POST /v1/renew presenting `identity` (or no client certificate at all). */
  renew(identity: ClientIdentity | undefined, body?: Record<string, unknown>): Promise<ApiResponse> {
    return mtlsRequest(`${this.apiUrl}/v1/renew`, this.roots, { ...(identity && { identity }), ...(body && { body: JSON.stringify(body) }) });
  }

  /** POST /v1/revoke presenting `identity` (or no client certificate at all). */
  revoke(identity: ClientIdentity | undefined, body: Record<string, unknown>): Promise<ApiResponse> {
    return mtlsRequest(`${this.apiUrl}/v1/revoke`, this.roots, { ...(identity && { identity }), body: JSON.stringify(body) });
  }

  /** GET /v1/certs/:serial presenting `identity` (or no client certificate at all). */
  record(identity: ClientIdentity | undefined, serial: string): Promise<ApiResponse> {
    return mtlsRequest(`${this.apiUrl}/v1/certs/${serial}`, this.roots, { method: "GET", ...(identity && { identity }) });
  }
}
