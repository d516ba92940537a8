import type { Logger } from "pino";
import type { CrlSource, ServedCrl } from "../../api/crl-router.js";
import type { CrlCatalog, CrlSnapshot } from "../../storage/ports.js";
import { publishedFrom } from "./crl-publisher.js";

/** CRLs larger than this are streamed from the store per request rather than held (see CrlMirror). */
export const STREAM_CRLS_ABOVE = 1024 * 1024;

/**
 * The CRLs another process signs, served as stored: what a public worker serves while the
 * daemon's primary process builds and signs (crl-publisher.ts). `refresh()` (every second) asks
 * the catalog which numbers are stored and takes only a scope whose number went up, so the
 * bytes served are always exactly a stored CRL, and a new one is served within a second of its
 * commit. A CRL up to `streamAbove` octets is loaded and served from memory; a larger one (a
 * million entries is ~40 MB) is only noted, and each request streams it from the store a chunk
 * at a time (crl-router.ts): every worker holding every large CRL, plus the copies made while
 * reading it, was most of the daemon's memory.
 */
export class CrlMirror implements CrlSource {
  /** Scope key → the CRL taken for it; a known scope without one has no CRL stored yet. */
  readonly #crls = new Map<string, ServedCrl>();
  #known = new Set<string>();
  #refreshing: Promise<void> | null = null;
  /** A refresh was asked for after the one under way began reading: it runs once more. */
  #again = false;
  #closed = false;
  readonly #streamAbove: number;

  constructor(
    private readonly catalog: CrlCatalog,
    /** The intermediates whose CRLs (full and partitions) are served, and the roots'. */
    private issuerKeyIds: readonly string[],
    private rootKeyIds: readonly string[],
    private currentKeyIdHex: string,
    private readonly log: Logger,
    opts: { streamAbove?: number } = {},
  ) {
    this.#streamAbove = opts.streamAbove ?? STREAM_CRLS_ABOVE;
  }

  /**
   * After an intermediate rotation: serve these intermediates' CRLs (the primary publishes the
   * same set) with `/crl` naming the current one; a new one's CRLs are loaded by the refresh this
   * starts. After a root rotation, `rootKeyIds` names the active roots whose CRLs are served.
   */
  setIssuers(issuerKeyIds: readonly string[], currentKeyIdHex: string, rootKeyIds: readonly string[] = this.rootKeyIds): Promise<void> {
    this.issuerKeyIds = issuerKeyIds;
    this.rootKeyIds = rootKeyIds;
    this.currentKeyIdHex = currentKeyIdHex;
    for (const k of [...this.#crls.keys()]) if (!this.#serves(k)) this.#crls.delete(k);
    return this.refresh();
  }

  /**
   * Looks for new CRL numbers and loads them; one refresh at a time. One asked for while another
   * runs is served by one more run after it (several such requests share it): the run under way
   * may have read the catalog before what the caller waits for was committed, or before
   * setIssuers changed what is served.
   */
  refresh(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = this.#refreshUntilCurrent().finally(() => (this.#refreshing = null));
    return this.#refreshing;
  }

  async #refreshUntilCurrent(): Promise<void> {
    do {
      this.#again = false;
      await this.#refresh();
    } while (this.#again && !this.#closed);
  }

  /** True when `key` is a scope of an issuer or root served now (setIssuers may change them during a refresh). */
  #serves(key: string): boolean {
    return this.issuerKeyIds.some((i) => key.startsWith(`${i}/`)) || this.rootKeyIds.some((r) => key === scopeKey(r, null));
  }

  async #refresh(): Promise<void> {
    const registered = await this.catalog.registeredShards();
    const known = new Set<string>();
    for (const k of [...this.issuerKeyIds, ...this.rootKeyIds]) known.add(scopeKey(k, null));
    for (const s of registered) if (this.issuerKeyIds.includes(s.issuerKeyId)) known.add(scopeKey(s.issuerKeyId, s.shard));
    this.#known = known;
    for (const s of await this.catalog.storedCrls()) {
      const key = scopeKey(s.issuerKeyId, s.shard);
      if (this.#closed) return;
      if (!known.has(key) || !this.#serves(key) || (this.#crls.get(key)?.crlNumber ?? 0) >= s.crlNumber) continue;
      if (s.derLength > this.#streamAbove) {
        // Served from the store per request: only what the headers need is kept.
        this.#crls.set(key, { scope: { issuerKeyId: s.issuerKeyId, shard: s.shard }, crlNumber: s.crlNumber, thisUpdate: s.thisUpdate, nextUpdate: s.nextUpdate, length: s.derLength });
        continue;
      }
      try {
        // Read in chunks with yields, so the OCSP answers this process serves meanwhile do not
        // wait. Null: replaced while read; the next refresh reads the newer one.
        const stored = await this.catalog.readCrl(s);
        if (stored && this.#serves(key) && stored.crlNumber > (this.#crls.get(key)?.crlNumber ?? 0)) this.#crls.set(key, publishedFrom(stored));
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

  openSnapshot(): Promise<CrlSnapshot> {
    return this.catalog.openSnapshot();
  }

  currentCrl(): ServedCrl | undefined {
    return this.crlFor(this.currentKeyIdHex, null);
  }

  knows(keyIdHex: string, shard: number | null): boolean {
    return this.#known.has(scopeKey(keyIdHex, shard));
  }

  crlFor(keyIdHex: string, shard: number | null): ServedCrl | undefined {
    return this.#crls.get(scopeKey(keyIdHex, shard));
  }

  /** Roots first, then each intermediate's full CRL and its partitions in order, as CrlDirectory.all(). */
  all(): ServedCrl[] {
    const out: ServedCrl[] = [];
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
