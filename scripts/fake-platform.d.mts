// Types for scripts/fake-platform.mjs (plain JS so it runs without a build step).
// TypeScript's NodeNext resolution pairs `import "../scripts/fake-platform.mjs"` with this file.
import type { JWK } from "jose";

export type FakePlatformAlg = "RS256" | "ES256" | "EdDSA";

export interface FakePlatformOptions {
  /** Signing algorithm for every key this platform generates. Default "RS256". */
  alg?: FakePlatformAlg;
  /** Default "https://accounts.google.com". */
  gceIssuer?: string;
  /** Default "https://kubernetes.default.svc.cluster.local". */
  k8sIssuer?: string;
}

/** A published verification key: the public JWK plus kid (RFC 7638 thumbprint), alg and use. */
export type FakePlatformJwk = JWK & { kid: string; alg: string; use: "sig" };

export interface MintTimes {
  /** Seconds since epoch. Default now. */
  iat?: number;
  /** Seconds since epoch. Default iat + 3600. */
  exp?: number;
  /** Seconds since epoch. GCE: omitted unless given. K8s: default iat. */
  nbf?: number;
}

export interface MintGceOptions extends MintTimes {
  aud: string;
  instanceName: string;
  projectId: string;
  /** Default "us-central1-a". */
  zone?: string;
  /** Deep-merged over the default claims, last. An `undefined` value removes that claim. */
  claims?: object;
  /** Merged over the default protected header {alg, kid, typ: "JWT"}. */
  header?: object;
}

export interface MintK8sOptions extends MintTimes {
  aud: string;
  namespace: string;
  serviceAccount: string;
  /** Deep-merged over the default claims, last. An `undefined` value removes that claim. */
  claims?: object;
  /** Merged over the default protected header {alg, kid} (no typ, like real Kubernetes tokens). */
  header?: object;
  /** Default a random UUID; null omits the jti claim. */
  jti?: string | null;
}

export declare class FakePlatform {
  constructor(opts?: FakePlatformOptions);
  /** Number of GET /jwks requests served. */
  jwksRequests: number;
  /** Listens on 127.0.0.1:port (0 = any); resolves with "http://127.0.0.1:PORT". */
  start(port?: number): Promise<string>;
  stop(): Promise<void>;
  /** Base URL; throws before start(). */
  get url(): string;
  /** `${url}/jwks` */
  get jwksUrl(): string;
  /** kid of the current signing key; throws until the first key exists (await start()/rotate()/a mint). */
  get kid(): string;
  /** Current key, then the previous one unless the last rotate() used dropOld. */
  jwks(): { keys: FakePlatformJwk[] };
  /** Generates a new key and makes it current; resolves with its kid. */
  rotate(opts?: { dropOld?: boolean }): Promise<string>;
  mintGce(opts: MintGceOptions): Promise<string>;
  mintK8s(opts: MintK8sOptions): Promise<string>;
  /** Signs arbitrary claims; header merged over {alg, kid, typ: "JWT"}. */
  mint(claims: object, header?: object): Promise<string>;
}
