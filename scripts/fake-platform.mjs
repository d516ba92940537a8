#!/usr/bin/env node
// @ts-check
/**
 * fake-platform: a local identity-platform simulator for tests and demos.
 *
 * It stands in for two real workload-identity issuers so that attestation code can be
 * exercised end to end (real HTTP JWKS fetches, real signatures) without a cloud account:
 *
 *  - Google Compute Engine instance identity tokens, "full" format
 *    (https://cloud.google.com/compute/docs/instances/verifying-instance-identity#token_format).
 *    Real ones are fetched from the metadata server at
 *    /computeMetadata/v1/instance/service-accounts/default/identity?audience=AUD&format=full
 *    and are RS256 JWTs signed by Google's OAuth keys (https://www.googleapis.com/oauth2/v3/certs).
 *
 *  - Kubernetes projected (bound) service-account tokens
 *    (https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-tokens,
 *    claim layout from k8s.io/kubernetes/pkg/serviceaccount/claims.go). The API server publishes its
 *    keys via OIDC discovery at /.well-known/openid-configuration and /openid/v1/jwks.
 *
 * Nothing in src/ depends on this file. It is plain JavaScript ESM with JSDoc types (types for
 * TypeScript callers live in fake-platform.d.mts) so `node scripts/fake-platform.mjs` needs no build.
 *
 * Key lifecycle: the platform holds one *current* signing key and, after rotate(), the *previous*
 * one too. Both are published in the JWKS, mirroring how real issuers keep serving the old key for
 * a while so tokens minted just before a rotation still verify. rotate({ dropOld: true }) simulates
 * an abrupt revocation instead. A second rotation forgets the key from two generations back.
 *
 * CLI: node scripts/fake-platform.mjs [--port N] [--alg RS256|ES256|EdDSA]
 */

import { createServer } from "node:http";
import { createHash, randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";

/** @typedef {"RS256" | "ES256" | "EdDSA"} Alg */

/**
 * @typedef {object} SigningKey
 * @property {string} kid     RFC 7638 JWK thumbprint (SHA-256) of the public key.
 * @property {CryptoKey} privateKey
 * @property {import("jose").JWK & { kid: string, alg: string, use: "sig" }} publicJwk
 */

/**
 * @typedef {object} MintTimes
 * @property {number} [iat] seconds since epoch; default now
 * @property {number} [exp] seconds since epoch; default iat + 3600
 * @property {number} [nbf] seconds since epoch
 */

/**
 * @typedef {MintTimes & {
 *   aud: string, instanceName: string, projectId: string, zone?: string,
 *   claims?: object, header?: object
 * }} MintGceOptions
 */

/**
 * @typedef {MintTimes & {
 *   aud: string, namespace: string, serviceAccount: string,
 *   claims?: object, header?: object, jti?: string | null
 * }} MintK8sOptions
 */

const ALGS = /** @type {const} */ (["RS256", "ES256", "EdDSA"]);
const DEFAULT_GCE_ISSUER = "https://accounts.google.com";
// The in-cluster issuer name kube-apiserver uses when --service-account-issuer is the default.
const DEFAULT_K8S_ISSUER = "https://kubernetes.default.svc.cluster.local";
// Both real issuers hand out one-hour tokens by default (GCE: fixed 1h; K8s: expirationSeconds 3600).
const DEFAULT_TTL_SECONDS = 3600;
const MAX_BODY_BYTES = 64 * 1024;
// The numeric "sub" of the (fake) default compute service account. Google puts the service
// account's unique ID in both sub and azp.
const GCE_SUBJECT = "1122334455";

/** @returns {number} the current time in whole seconds since the epoch (JWT NumericDate). */
function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

/**
 * Stable pseudo-identifiers: the same project / instance / service account always gets the same
 * number or UUID, as on a real platform, so tests can assert on them and pinning logic sees
 * consistent values across mints. Not random, not secret.
 * @param {string} input
 */
function digest(input) {
  return createHash("sha256").update(input).digest();
}

/** @param {string} input @param {number} digits @returns {string} a decimal string without a leading zero */
function stableDigits(input, digits) {
  const low = 10n ** BigInt(digits - 1);
  return String(low + (BigInt("0x" + digest(input).toString("hex")) % (9n * low)));
}

/** @param {string} input @returns {string} a UUID-shaped (version 4 bits set) identifier */
function stableUuid(input) {
  const b = digest(input).subarray(0, 16);
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isPlainObject(v) {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Deep-merges `over` onto `base` (neither is mutated). Plain objects merge key by key; arrays,
 * scalars and null replace; an explicit `undefined` deletes the key, which is how negative tests
 * strip a default claim (e.g. `claims: { email: undefined }`). Keys are defined as own data
 * properties so a JSON body carrying "__proto__" cannot re-prototype the result.
 * @param {Record<string, unknown>} base
 * @param {Record<string, unknown>} over
 * @returns {Record<string, unknown>}
 */
function deepMerge(base, over) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [k, v] of Object.entries(base)) defineOwn(out, k, v);
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete out[k];
    else if (isPlainObject(v) && isPlainObject(out[k])) defineOwn(out, k, deepMerge(out[k], v));
    else defineOwn(out, k, v);
  }
  return out;
}

/** @param {Record<string, unknown>} obj @param {string} key @param {unknown} value */
function defineOwn(obj, key, value) {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** @param {unknown} v @param {string} name */
function requireString(v, name) {
  if (typeof v !== "string" || v === "") throw new TypeError(`${name} must be a non-empty string`);
  return v;
}

/** @param {unknown} v @param {string} name @returns {number | undefined} */
function optionalTime(v, name) {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new TypeError(`${name} must be a number of seconds since the epoch`);
  return v;
}

/** Error whose message is safe to return to an HTTP client as a 4xx. */
class HttpError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class FakePlatform {
  /** Number of GET /jwks requests served; tests use it to assert cache / rate-limited refetching. */
  jwksRequests = 0;

  /** @type {Alg} */ #alg;
  /** @type {string} */ #gceIssuer;
  /** @type {string} */ #k8sIssuer;
  /** @type {SigningKey | undefined} */ #current;
  /** @type {SigningKey | undefined} */ #previous;
  /** Resolves once the first key exists. Key generation is async in WebCrypto, so it starts here. */
  /** @type {Promise<void>} */ #ready;
  /** @type {import("node:http").Server | undefined} */ #server;
  /** @type {string | undefined} */ #url;

  /**
   * @param {{ alg?: Alg, gceIssuer?: string, k8sIssuer?: string }} [opts]
   */
  constructor(opts = {}) {
    const alg = opts.alg ?? "RS256";
    if (!ALGS.includes(alg)) throw new TypeError(`unsupported alg ${String(alg)}; use one of ${ALGS.join(", ")}`);
    this.#alg = alg;
    this.#gceIssuer = opts.gceIssuer ?? DEFAULT_GCE_ISSUER;
    this.#k8sIssuer = opts.k8sIssuer ?? DEFAULT_K8S_ISSUER;
    this.#ready = this.#generate().then((k) => {
      // A rotate() racing the very first generation wins; don't clobber its key.
      if (!this.#current) this.#current = k;
    });
    // Surface failures where callers await (start/mint/rotate), not as an unhandled rejection.
    this.#ready.catch(() => {});
  }

  /** @returns {Promise<SigningKey>} */
  async #generate() {
    // extractable so exportJWK can read the public half (the private half never leaves this object).
    const { publicKey, privateKey } = await generateKeyPair(this.#alg, { extractable: true });
    const jwk = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(jwk);
    return { kid, privateKey, publicJwk: { ...jwk, kid, alg: this.#alg, use: "sig" } };
  }

  /** @returns {SigningKey} */
  #key() {
    if (!this.#current) throw new Error("FakePlatform: no signing key yet; await start(), rotate() or a mint first");
    return this.#current;
  }

  /**
   * Starts the HTTP server on 127.0.0.1 (never a public interface: it mints tokens for anyone).
   * @param {number} [port] 0 = any free port
   * @returns {Promise<string>} the base URL, "http://127.0.0.1:PORT"
   */
  async start(port = 0) {
    if (this.#server) throw new Error("FakePlatform: already started");
    await this.#ready;
    const server = createServer((req, res) => void this.#handle(req, res));
    this.#server = server;
    try {
      await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => {
          server.off("error", reject);
          resolve(undefined);
        });
      });
    } catch (err) {
      this.#server = undefined;
      throw err;
    }
    const addr = server.address();
    if (!addr || typeof addr === "string") throw new Error("FakePlatform: unexpected server address");
    this.#url = `http://127.0.0.1:${addr.port}`;
    return this.#url;
  }

  /** Stops the server, dropping idle keep-alive connections so it closes promptly. Idempotent. */
  async stop() {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#url = undefined;
    await new Promise((resolve) => {
      server.close(() => resolve(undefined));
      server.closeAllConnections();
    });
  }

  /** Base URL; only valid after start(). */
  get url() {
    if (!this.#url) throw new Error("FakePlatform: not started");
    return this.#url;
  }

  get jwksUrl() {
    return `${this.url}/jwks`;
  }

  /** kid of the current signing key (available once start()/rotate()/a mint has resolved). */
  get kid() {
    return this.#key().kid;
  }

  /**
   * The public JWKS: current key first, then the previous one if it is still published.
   * Returns fresh copies so callers can't mutate the platform's keys.
   * @returns {{ keys: Array<import("jose").JWK & { kid: string, alg: string, use: "sig" }> }}
   */
  jwks() {
    const keys = [this.#key()];
    if (this.#previous) keys.push(this.#previous);
    return { keys: keys.map((k) => ({ ...k.publicJwk })) };
  }

  /**
   * Generates a new key pair and makes it the signing key. The old current key stays published as
   * "previous" (tokens it signed keep verifying) unless dropOld, in which case only the new key is
   * published, as after a key compromise.
   * @param {{ dropOld?: boolean }} [opts]
   * @returns {Promise<string>} the new kid
   */
  async rotate(opts = {}) {
    await this.#ready;
    const next = await this.#generate();
    this.#previous = opts.dropOld ? undefined : this.#current;
    this.#current = next;
    return next.kid;
  }

  /**
   * Signs arbitrary claims with the current key: full control for negative tests. `header` is
   * merged over the default protected header {alg, kid, typ: "JWT"}; setting a field to undefined
   * removes it (e.g. { kid: undefined }). An alg that doesn't fit the key makes jose throw.
   * @param {object} claims
   * @param {object} [header]
   * @returns {Promise<string>}
   */
  async mint(claims, header) {
    await this.#ready;
    const key = this.#key();
    return this.#sign(claims, { alg: this.#alg, kid: key.kid, typ: "JWT", ...header }, key);
  }

  /**
   * @param {object} claims
   * @param {object} header
   * @param {SigningKey} key
   */
  async #sign(claims, header, key) {
    // The header is set explicitly (not via jose's helpers) so overrides such as a foreign kid
    // or a different typ reach the wire exactly as given. JSON drops undefined-valued fields.
    const protectedHeader = /** @type {import("jose").JWTHeaderParameters} */ (header);
    return new SignJWT(/** @type {import("jose").JWTPayload} */ (claims)).setProtectedHeader(protectedHeader).sign(key.privateKey);
  }

  /**
   * Mints a GCE instance identity token in Google's "full" format (format=full adds the
   * google.compute_engine block; licenses are omitted as with format=full without licenses=TRUE).
   * Google never sets jti or nbf; nbf appears only if passed. project_number and instance_id are
   * stable per project / instance; instance_creation_timestamp is a day before iat.
   * @param {MintGceOptions} opts
   * @returns {Promise<string>}
   */
  async mintGce(opts) {
    const aud = requireString(opts?.aud, "aud");
    const instanceName = requireString(opts.instanceName, "instanceName");
    const projectId = requireString(opts.projectId, "projectId");
    const zone = opts.zone === undefined ? "us-central1-a" : requireString(opts.zone, "zone");
    const iat = optionalTime(opts.iat, "iat") ?? nowSeconds();
    const exp = optionalTime(opts.exp, "exp") ?? iat + DEFAULT_TTL_SECONDS;
    const nbf = optionalTime(opts.nbf, "nbf");
    const projectNumber = Number(stableDigits(`project:${projectId}`, 12));
    /** @type {Record<string, unknown>} */
    const payload = {
      iss: this.#gceIssuer,
      aud,
      azp: GCE_SUBJECT,
      sub: GCE_SUBJECT,
      // The default compute service account's address format.
      email: `${projectNumber}-compute@developer.gserviceaccount.com`,
      email_verified: true,
      iat,
      ...(nbf === undefined ? {} : { nbf }),
      exp,
      google: {
        compute_engine: {
          instance_creation_timestamp: iat - 86400,
          // Google sends instance_id as a decimal string (it exceeds 2^53) and project_number as a number.
          instance_id: stableDigits(`instance:${projectId}/${zone}/${instanceName}`, 19),
          instance_name: instanceName,
          project_id: projectId,
          project_number: projectNumber,
          zone,
        },
      },
    };
    await this.#ready;
    const key = this.#key();
    const claims = opts.claims ? deepMerge(payload, /** @type {Record<string, unknown>} */ (opts.claims)) : payload;
    // Google's identity tokens carry {alg: "RS256", kid, typ: "JWT"}.
    return this.#sign(claims, { alg: this.#alg, kid: key.kid, typ: "JWT", ...opts.header }, key);
  }

  /**
   * Mints a Kubernetes projected service-account token as kube-apiserver's TokenRequest API issues
   * it for a pod: audience is an array, nbf = iat, and jti is set (Kubernetes >= 1.29,
   * ServiceAccountTokenJTI). Service-account and pod uids are stable per namespace/name.
   * Like real tokens the default header is {alg, kid} with no typ; pass header to add one.
   * @param {MintK8sOptions} opts
   * @returns {Promise<string>}
   */
  async mintK8s(opts) {
    const aud = requireString(opts?.aud, "aud");
    const namespace = requireString(opts.namespace, "namespace");
    const serviceAccount = requireString(opts.serviceAccount, "serviceAccount");
    const iat = optionalTime(opts.iat, "iat") ?? nowSeconds();
    const exp = optionalTime(opts.exp, "exp") ?? iat + DEFAULT_TTL_SECONDS;
    const nbf = optionalTime(opts.nbf, "nbf") ?? iat;
    if (opts.jti !== undefined && opts.jti !== null && typeof opts.jti !== "string") {
      throw new TypeError("jti must be a string, null (omit) or undefined (random)");
    }
    const jti = opts.jti === undefined ? randomUUID() : opts.jti;
    const podName = `${serviceAccount}-pod`;
    /** @type {Record<string, unknown>} */
    const payload = {
      aud: [aud],
      exp,
      iat,
      iss: this.#k8sIssuer,
      ...(jti === null ? {} : { jti }),
      "kubernetes.io": {
        namespace,
        pod: { name: podName, uid: stableUuid(`pod:${namespace}/${podName}`) },
        serviceaccount: { name: serviceAccount, uid: stableUuid(`sa:${namespace}/${serviceAccount}`) },
      },
      nbf,
      sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
    };
    await this.#ready;
    const key = this.#key();
    const claims = opts.claims ? deepMerge(payload, /** @type {Record<string, unknown>} */ (opts.claims)) : payload;
    return this.#sign(claims, { alg: this.#alg, kid: key.kid, ...opts.header }, key);
  }

  /**
   * @param {import("node:http").IncomingMessage} req
   * @param {import("node:http").ServerResponse} res
   */
  async #handle(req, res) {
    try {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const route = `${req.method} ${path}`;
      if (route === "GET /jwks") {
        this.jwksRequests++;
        // Real issuers send long max-age values (kube-apiserver: 3600); 60s keeps demos responsive
        // to rotations while still giving HTTP-caching clients something to honour.
        return send(res, 200, this.jwks(), { "cache-control": "max-age=60" });
      }
      if (route === "GET /.well-known/openid-configuration") {
        return send(res, 200, { issuer: this.#gceIssuer, jwks_uri: this.jwksUrl });
      }
      if (route === "POST /rotate") {
        return send(res, 200, { kid: await this.rotate() });
      }
      if (route === "POST /mint/gce" || route === "POST /mint/k8s") {
        const body = await readJson(req);
        let token;
        try {
          token = path === "/mint/gce" ? await this.mintGce(/** @type {any} */ (body)) : await this.mintK8s(/** @type {any} */ (body));
        } catch (err) {
          throw new HttpError(400, err instanceof Error ? err.message : String(err));
        }
        return send(res, 200, { token });
      }
      return send(res, 404, { error: "not found" });
    } catch (err) {
      if (err instanceof HttpError) {
        // After a 413 the rest of the body is unread: close rather than reuse the connection.
        return send(res, err.status, { error: err.message }, err.status === 413 ? { connection: "close" } : {});
      }
      return send(res, 500, { error: "internal error" });
    }
  }
}

/**
 * @param {import("node:http").ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 * @param {Record<string, string>} [headers]
 */
function send(res, status, body, headers = {}) {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * Reads a JSON object body of at most MAX_BODY_BYTES. Oversized bodies are refused (413) as soon as
 * the limit is known to be exceeded, without buffering the remainder.
 * @param {import("node:http").IncomingMessage} req
 * @returns {Promise<Record<string, unknown>>}
 */
function readJson(req) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
      req.resume(); // drain and discard so the client can read our response
      return reject(new HttpError(413, `body exceeds ${MAX_BODY_BYTES} bytes`));
    }
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    let done = false;
    req.on("data", (/** @type {Buffer} */ chunk) => {
      if (done) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        done = true;
        chunks.length = 0;
        return reject(new HttpError(413, `body exceeds ${MAX_BODY_BYTES} bytes`));
      }
      chunks.push(chunk);
    });
    req.on("error", (err) => {
      if (!done) reject(err);
      done = true;
    });
    req.on("end", () => {
      if (done) return;
      done = true;
      const text = Buffer.concat(chunks).toString("utf8");
      /** @type {unknown} */
      let parsed;
      try {
        parsed = text === "" ? {} : JSON.parse(text);
      } catch {
        return reject(new HttpError(400, "body is not valid JSON"));
      }
      if (!isPlainObject(parsed)) return reject(new HttpError(400, "body must be a JSON object"));
      resolve(parsed);
    });
  });
}

/**
 * @param {string[]} argv
 * @returns {{ port: number, alg: Alg }}
 */
function parseArgs(argv) {
  let port = 0;
  /** @type {Alg} */
  let alg = "RS256";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const eq = arg.indexOf("=");
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = () => (eq >= 0 ? arg.slice(eq + 1) : argv[++i]);
    if (name === "--port") {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--port: invalid port ${String(v)}`);
      port = n;
    } else if (name === "--alg") {
      const v = value();
      if (!ALGS.includes(/** @type {Alg} */ (v))) throw new Error(`--alg: use one of ${ALGS.join(", ")}`);
      alg = /** @type {Alg} */ (v);
    } else if (name === "--help" || name === "-h") {
      process.stdout.write("usage: node scripts/fake-platform.mjs [--port N] [--alg RS256|ES256|EdDSA]\n");
      process.exit(0);
    } else {
      throw new Error(`unknown argument ${arg}`);
    }
  }
  return { port, alg };
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`fake-platform: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const platform = new FakePlatform({ alg: args.alg });
  // Install the handlers before announcing readiness: a supervisor may signal us the moment it
  // sees the listening line, and an unhandled SIGTERM would skip the clean exit(0).
  const shutdown = () => {
    platform.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
  const url = await platform.start(args.port);
  // One machine-readable line: scripts and tests wait for it to learn the port.
  process.stdout.write(`fake-platform listening url=${url} jwks=${platform.jwksUrl}\n`);
}

// Run as a CLI only when executed directly, not when imported by tests.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`fake-platform: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}
