import { readFileSync } from "node:fs";
import { createLocalJWKSet, type JSONWebKeySet, type JWK } from "jose";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";

export interface JwksSourceOptions {
  /** Exactly one of file / url. */
  file?: string | undefined;
  url?: string | undefined;
  /** Cached keys are reloaded after this long even when every kid is known. */
  maxAgeMs: number;
  /** An unknown kid triggers at most one reload per this interval (a platform rotated its key). */
  refetchCooldownMs: number;
  timeoutMs?: number;
}

const MAX_JWKS_BYTES = 1 << 20;

type KeyResolver = ReturnType<typeof createLocalJWKSet>;

/**
 * One loaded key set and jose's resolver over it. The resolver imports a JWK the first time a
 * token needs it and keeps the imported key (per JWK and alg), so it must outlive the token:
 * made once per key set, a platform key is imported once, not once per token (jose's
 * createLocalJWKSet + the key import were 7 % of the sign path's main thread). A reload that
 * brings different keys makes a new snapshot, and with it a fresh cache.
 */
export class JwksSnapshot {
  #resolver: KeyResolver | null = null;

  constructor(
    readonly keys: JSONWebKeySet,
    /** The key set's JSON: a reload with the same content keeps this snapshot and its imported keys. */
    readonly content: string,
  ) {}

  /**
   * Made on first use rather than at load: a key set jose refuses then fails the token that
   * needed it, inside its verification, as it always did, instead of failing the load.
   */
  get resolver(): KeyResolver {
    return (this.#resolver ??= createLocalJWKSet(this.keys));
  }
}

/**
 * A platform's signing keys, from a file or an http(s) URL, cached. When a token names a kid the
 * cache does not hold, the keys are reloaded once (rate-limited by refetchCooldown), so platform
 * key rotation works without restarting fleetca, and a flood of made-up kids cannot turn fleetca
 * into a load generator against the platform.
 */
export class JwksSource {
  #snapshot: JwksSnapshot | null = null;
  #loadedAt = -Infinity;
  #inFlight: Promise<void> | null = null;

  constructor(
    private readonly opts: JwksSourceOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    if (!opts.file === !opts.url) throw new Error("jwks needs exactly one of file or url");
  }

  get location(): string {
    return this.opts.url ?? this.opts.file!;
  }

  /** Loads the keys now, so a misconfigured JWKS shows in the start-up log, not at the first token. */
  warm(): Promise<void> {
    return this.#reload();
  }

  /** The key set (and its resolver) to verify a token whose header names `kid`. */
  async keysFor(kid: string): Promise<JwksSnapshot> {
    const now = this.clock.now().getTime();
    const stale = now - this.#loadedAt >= this.opts.maxAgeMs;
    const unknownKid = this.#snapshot !== null && !this.#snapshot.keys.keys.some((k) => k.kid === kid);
    const mayRefetch = now - this.#loadedAt >= this.opts.refetchCooldownMs;
    if (this.#snapshot === null || stale || (unknownKid && mayRefetch)) await this.#reload();
    if (this.#snapshot === null) throw CaError.unauthorized("jwks_unavailable", "the platform's signing keys could not be loaded");
    return this.#snapshot;
  }

  #reload(): Promise<void> {
    this.#inFlight ??= this.#load()
      .then((keys) => {
        const content = JSON.stringify(keys);
        if (this.#snapshot?.content !== content) this.#snapshot = new JwksSnapshot(keys, content);
        this.log.info({ jwks: this.location, kids: keys.keys.map((k) => k.kid) }, "platform keys loaded");
      })
      .catch((err: unknown) => {
        // Keep serving from the last good keys; a platform outage must not lock out every host.
        this.log.warn({ jwks: this.location, err: (err as Error).message }, "platform keys could not be loaded");
      })
      .finally(() => {
        this.#loadedAt = this.clock.now().getTime();
        this.#inFlight = null;
      });
    return this.#inFlight;
  }

  async #load(): Promise<JSONWebKeySet> {
    let text: string;
    if (this.opts.file) {
      text = readFileSync(this.opts.file, "utf8");
    } else {
      const res = await fetch(this.opts.url!, {
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5_000),
        headers: { accept: "application/json" },
        redirect: "error",
      });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    }
    if (text.length > MAX_JWKS_BYTES) throw new Error("JWKS larger than 1 MiB");
    return publicSigningKeys(JSON.parse(text));
  }
}

/**
 * Keeps only public asymmetric keys with a kid: an "oct" (HMAC) key or a private key in a JWKS is
 * a misconfiguration, and accepting HMAC against published key material is the classic JWT
 * algorithm-confusion attack (RFC 8725 §2.1, §3.1).
 */
export function publicSigningKeys(doc: unknown): JSONWebKeySet {
  const keys = (doc as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new Error("not a JWKS (no keys array)");
  const usable = keys.filter(
    (k): k is JWK =>
      typeof k === "object" &&
      k !== null &&
      typeof (k as JWK).kid === "string" &&
      ["RSA", "EC", "OKP"].includes((k as JWK).kty as string) &&
      !("d" in k) &&
      ((k as JWK).use === undefined || (k as JWK).use === "sig"),
  );
  return { keys: usable };
}
