import type { Logger } from "pino";
import type { CrlSource } from "../../api/crl-router.js";
import type { CrlCatalog } from "../../storage/ports.js";
import { publishedFrom, type PublishedCrl } from "./crl-publisher.js";

/**
 * The CRLs another process signs, served as stored: what a public worker serves while the
 * daemon's primary process builds and signs (crl-publisher.ts). `refresh()` (every second) asks
 * the catalog which numbers are stored and loads only a scope whose number went up, so the
 * bytes served are always exactly a stored CRL, and a new one is served within a second of its
 * commit.
 */
export class CrlMirror implements CrlSource {
  /** Scope key → the CRL loaded for it; a known scope without one has no CRL stored yet. */
  readonly #crls = new Map<string, PublishedCrl>();
  #known = new Set<string>();
  #refreshing: Promise<void> | null = null;
  #closed = false;

  constructor(
    private readonly catalog: CrlCatalog,
    /** The intermediates whose CRLs (full and partitions) are served, and the roots'. */
    private readonly issuerKeyIds: readonly string[],
    private readonly rootKeyIds: readonly string[],
    private readonly currentKeyIdHex: string,
    private readonly log: Logger,
  ) {}

  /** Looks for new CRL numbers and loads them; one refresh at a time (a tick while one runs joins it). */
  refresh(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = null));
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const known = new Set<string>();
    for (const k of [...this.issuerKeyIds, ...this.rootKeyIds]) known.add(scopeKey(k, null));
    for (const s of this.catalog.registeredShards()) if (this.issuerKeyIds.includes(s.issuerKeyId)) known.add(scopeKey(s.issuerKeyId, s.shard));
    this.#known = known;
    for (const s of this.catalog.storedCrlNumbers()) {
      const key = scopeKey(s.issuerKeyId, s.shard);
      if (this.#closed) return;
      if (!known.has(key) || (this.#crls.get(key)?.crlNumber ?? 0) >= s.crlNumber) continue;
      try {
        // Read in chunks with yields: a million-entry CRL (~40 MB) must not stall the OCSP
        // answers this process serves meanwhile. Null: replaced while read; the next refresh
        // reads the newer one.
        const stored = await this.catalog.readCrl(s);
        if (stored && stored.crlNumber > (this.#crls.get(key)?.crlNumber ?? 0)) this.#crls.set(key, publishedFrom(stored));
      } catch (err) {
        // The previous CRL stays served; the primary, which wrote it, reports publication health.
        this.log.error({ err, issuer: s.issuerKeyId, shard: s.shard }, "loading a stored CRL failed");
      }
    }
  }

  /** Stops refreshing, after the read under way, so nothing reads a closed store. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#refreshing;
  }

  currentCrl(): PublishedCrl | undefined {
    return this.crlFor(this.currentKeyIdHex, null);
  }

  knows(keyIdHex: string, shard: number | null): boolean {
    return this.#known.has(scopeKey(keyIdHex, shard));
  }

  crlFor(keyIdHex: string, shard: number | null): PublishedCrl | undefined {
    return this.#crls.get(scopeKey(keyIdHex, shard));
  }

  /** Roots first, then each intermediate's full CRL and its partitions in order, as CrlDirectory.all(). */
  all(): PublishedCrl[] {
    const out: PublishedCrl[] = [];
    const push = (k: string, shard: number | null) => {
      const c = this.#crls.get(scopeKey(k, shard));
      if (c) out.push(c);
    };
    for (const r of this.rootKeyIds) push(r, null);
    for (const i of this.issuerKeyIds) {
      push(i, null);
      const shards = [...this.#known].filter((s) => s.startsWith(`${i}/`) && !s.endsWith("/full")).map((s) => Number(s.slice(i.length + 1)));
      for (const n of shards.sort((a, b) => a - b)) push(i, n);
    }
    return out;
  }
}

function scopeKey(keyIdHex: string, shard: number | null): string {
  return `${keyIdHex}/${shard ?? "full"}`;
}
