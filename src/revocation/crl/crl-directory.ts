import type { CrlScope, RevocationEvent } from "../../storage/ports.js";
import type { CrlPublisher, PublishedCrl } from "./crl-publisher.js";
import type { StoredRootCrl } from "./root-crl.js";

/** What the daemon reports about CRL publication (/healthz, the log). */
export interface CrlHealth {
  /** Each makes /healthz answer 503: a CRL that cannot be built, or one served past its nextUpdate. */
  errors: string[];
  /** Shown by /healthz with a 200: a root CRL close to its nextUpdate or never signed. */
  warnings: string[];
}

/**
 * Every CRL the daemon serves, by issuer key id and partition: each intermediate that answers
 * for what it issued has a publisher for its full CRL and one per partition (crl.shards); each
 * root has the CRL `fleetca crl sign-root` stored. `/crl` serves the current intermediate's.
 */
export class CrlDirectory {
  #publishers: readonly CrlPublisher[];
  readonly #byScope = new Map<string, CrlPublisher>();
  readonly #roots: Map<string, StoredRootCrl>;

  constructor(
    publishers: readonly CrlPublisher[],
    roots: readonly StoredRootCrl[],
    private currentKeyIdHex: string,
  ) {
    this.#publishers = publishers;
    for (const p of publishers) this.#byScope.set(scopeKey(p.keyIdHex, p.scope.shard), p);
    this.#roots = new Map(roots.map((r) => [r.keyIdHex, r]));
    if (!this.#byScope.has(scopeKey(currentKeyIdHex, null))) throw new Error("the current issuer has no CRL publisher");
  }

  /**
   * After an intermediate rotation: publishers for a new intermediate (started here: a stored
   * CRL is loaded, a missing one signed) and `/crl` switched to the new current one. Publishers of
   * an intermediate already known are kept: its CRL numbers go on (RFC 5280 §5.2.3).
   */
  async addIssuer(publishers: readonly CrlPublisher[]): Promise<void> {
    const fresh = publishers.filter((p) => !this.#byScope.has(scopeKey(p.keyIdHex, p.scope.shard)));
    for (const p of fresh) this.#byScope.set(scopeKey(p.keyIdHex, p.scope.shard), p);
    this.#publishers = [...this.#publishers, ...fresh];
    await Promise.all(fresh.map((p) => p.start()));
  }

  /** Makes `/crl` serve this intermediate's full CRL (it must have a publisher). */
  setCurrent(keyIdHex: string): void {
    if (!this.#byScope.has(scopeKey(keyIdHex, null))) throw new Error("the current issuer has no CRL publisher");
    this.currentKeyIdHex = keyIdHex;
  }

  /**
   * Stops publishing an intermediate whose last certificate has expired: its CRL would list
   * nothing a relying party can still be shown (RFC 5280 §3.3: expired certificates leave CRLs).
   */
  async dropIssuer(keyIdHex: string): Promise<void> {
    if (keyIdHex === this.currentKeyIdHex) throw new Error("the current issuer's CRLs cannot be dropped");
    const gone = this.#publishers.filter((p) => p.keyIdHex === keyIdHex);
    this.#publishers = this.#publishers.filter((p) => p.keyIdHex !== keyIdHex);
    for (const p of gone) this.#byScope.delete(scopeKey(p.keyIdHex, p.scope.shard));
    await Promise.all(gone.map((p) => p.stop()));
  }

  /** Intermediates with a publisher now. */
  issuerKeyIds(): string[] {
    return [...new Set(this.#publishers.map((p) => p.keyIdHex))];
  }

  /** The current issuing intermediate's full CRL; undefined until one is published. */
  currentCrl(): PublishedCrl | undefined {
    return this.crlFor(this.currentKeyIdHex, null);
  }

  /** True when an issuer with this key id (lower-case hex SKI) has this scope, published or not. */
  knows(keyIdHex: string, shard: number | null): boolean {
    return this.#byScope.has(scopeKey(keyIdHex, shard)) || (shard === null && this.#roots.has(keyIdHex));
  }

  /** The CRL of one scope, or undefined when it is unknown or not yet published. */
  crlFor(keyIdHex: string, shard: number | null): PublishedCrl | undefined {
    if (shard === null) {
      const root = this.#roots.get(keyIdHex);
      if (root) return root.current() ?? undefined;
    }
    return this.#byScope.get(scopeKey(keyIdHex, shard))?.current() ?? undefined;
  }

  /** Every published CRL: roots first, then each intermediate's full CRL and its partitions (for /crls.pem). */
  all(): PublishedCrl[] {
    const out: PublishedCrl[] = [];
    for (const r of this.#roots.values()) {
      const c = r.current();
      if (c) out.push(c);
    }
    for (const p of this.#publishers) {
      const c = p.current();
      if (c) out.push(c);
    }
    return out;
  }

  /** RevocationFeed listener. */
  readonly onRevocations = (events: RevocationEvent[]): void => {
    for (const p of this.#publishers) p.notify(events);
  };

  /**
   * Loads every stored CRL and signs those missing. Resolves once each scope either serves a CRL
   * or has a recorded failure: it never rejects, so revocation volume or a signer fault cannot
   * stop the daemon from starting (it reports the problem instead).
   */
  async start(): Promise<void> {
    await this.refreshRoots();
    await Promise.all(this.#publishers.map((p) => p.start()));
  }

  /**
   * A root made while the daemon runs (`fleetca rotate root`): its CRL is served from now on. It
   * is listed once its stored CRL has been read, so /crls.pem never names a root without its CRL
   * only because the read was under way.
   */
  async addRoot(r: StoredRootCrl): Promise<void> {
    if (this.#roots.has(r.keyIdHex)) return;
    await r.refresh();
    // Another addRoot of the same root may have finished while this one read: keep the first.
    if (!this.#roots.has(r.keyIdHex)) this.#roots.set(r.keyIdHex, r);
  }

  /**
   * Picks up root CRLs another process signed (`fleetca crl sign-root`, `fleetca revoke-issuer`):
   * one summary query per root, cheap enough for the daemon's one-second issuer poll, so a revoked
   * intermediate is on the served root CRL within seconds rather than at the next tick.
   */
  async refreshRoots(): Promise<void> {
    await Promise.all([...this.#roots.values()].map((r) => r.refresh()));
  }

  /** Every scope (issuer and shard) a publisher keeps: what the replicas' CRL leases are over. */
  scopes(): CrlScope[] {
    return this.#publishers.map((p) => p.scope);
  }

  /** Replicas: the scopes another replica writes follow what it stored (each second or so). */
  async refreshFromStore(): Promise<void> {
    await Promise.all(this.#publishers.map((p) => p.refreshFromStore().catch(() => {})));
  }

  /** The publisher of a scope, if any (a lease just gained: publish now if due). */
  publisherOf(scope: CrlScope): CrlPublisher | undefined {
    return this.#byScope.get(scopeKey(scope.issuerKeyId, scope.shard));
  }

  /** The periodic job (daemon tick). */
  async regenerateDue(): Promise<void> {
    // The publishers run whether or not the root CRLs could be read; a failed read still rejects.
    const roots = this.refreshRoots();
    roots.catch(() => {});
    await Promise.all(this.#publishers.map((p) => p.regenerateIfDue()));
    await roots;
  }

  health(): CrlHealth {
    const errors: string[] = [];
    const warnings: string[] = [];
    for (const r of this.#roots.values()) {
      const p = r.problems();
      errors.push(...p.errors);
      warnings.push(...p.warnings);
    }
    for (const p of this.#publishers) errors.push(...p.problems());
    return { errors, warnings };
  }

  async stop(): Promise<void> {
    await Promise.all(this.#publishers.map((p) => p.stop()));
  }
}

function scopeKey(keyIdHex: string, shard: number | null): string {
  return `${keyIdHex}/${shard ?? "full"}`;
}
