import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { Issuer } from "../../issuance/issuer.js";
import type { SerialHex } from "../../core/serial.js";
import type { CrlScope, CrlStore, RevocationEvent, StoredCrl } from "../../storage/ports.js";
import { buildCrl } from "./crl-builder.js";
import { walkCrlAsync } from "./crl-walk.js";

/** The CRL a publisher serves now, exactly as stored. */
export interface PublishedCrl {
  der: Uint8Array;
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
}

export interface CrlCadence {
  /** Re-sign at least this often, revocations or not (config crl.interval). */
  intervalMs: number;
  /** nextUpdate = thisUpdate + this (config crl.validity); must exceed intervalMs. */
  validityMs: number;
  /** Revocations arriving within this window share one new CRL. */
  debounceMs: number;
}

/** Told about each CRL a publisher serves (metrics: generation time, entries). */
export interface CrlPublicationObserver {
  /** A CRL was signed and stored, `seconds` after its build started. */
  built(scope: CrlScope, entries: number, seconds: number): void;
  /** A CRL is served now: one just built, or the stored one loaded at start-up. */
  serving(scope: CrlScope, entries: number): void;
}

/**
 * Replicas sharing one database (issue 17): one writer per CRL scope, the holder of its lease
 * (cluster/lease-keeper.ts); the others serve the latest CRL the holder stored.
 */
export interface CrlWriterLease {
  /** True while this process holds the scope's lease. */
  holds(scope: CrlScope): boolean;
  /** saveCrl fenced by the lease (CrlLeases.saveCrlAsHolder): refused once another replica holds it. */
  save(s: StoredCrl): Promise<boolean>;
}

/** How long start-up waits for a CRL being rebuilt before it serves the stored one meanwhile. */
const START_WAIT_MS = 5_000;

/**
 * One CRL is built at a time, daemon-wide: memory stays bounded by the largest CRL (not the sum
 * of all scopes), and the second core is left to the requests.
 */
export class CrlBuildQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const r = this.#tail.then(job);
    this.#tail = r.catch(() => {});
    return r;
  }

  async drain(): Promise<void> {
    await this.#tail;
  }
}

/** Why the current CRL cannot be trusted to be current: shown by /healthz and the log. */
export interface PublicationFailure {
  at: Date;
  message: string;
}

/**
 * Keeps one CRL scope (an issuer's full CRL, or one partition) signed ahead and in memory
 * (DESIGN habit 8; Boulder crl-updater): re-signs it every `intervalMs`, and shortly after
 * revocations in its scope, coalescing bursts so a thousand revocations cost a handful of
 * signatures. Every new CRL is stored, with its number, before it is served (DESIGN habit 2), so
 * the number only goes up across restarts (RFC 5280 §5.2.3). A failure never stops the daemon:
 * the last stored CRL stays served, the failure is logged at error level every time and kept
 * for /healthz, and the next tick tries again.
 */
export class CrlPublisher {
  readonly scope: CrlScope;
  #current: PublishedCrl | null = null;
  #debounce: NodeJS.Timeout | null = null;
  /** A revocation (or a failed attempt) not yet in a stored CRL: the next tick regenerates. */
  #dirty = false;
  #stopped = false;
  #running: Promise<unknown> | null = null;
  #failure: PublicationFailure | null = null;
  #lastEntries = 0;

  constructor(
    private readonly issuer: Issuer,
    shard: number | null,
    /** The partition's own URL for its IDP (crl-shard.ts); null for the full CRL. */
    readonly distributionPointUrl: string | null,
    private readonly store: CrlStore,
    private readonly clock: Clock,
    private readonly cadence: CrlCadence,
    private readonly log: Logger,
    private readonly queue: CrlBuildQueue = new CrlBuildQueue(),
    private readonly observer?: CrlPublicationObserver,
    /** Absent: this process is the only writer (SQLite). */
    private readonly lease?: CrlWriterLease,
  ) {
    if (!(cadence.intervalMs > 0) || cadence.debounceMs < 0) throw new Error("invalid CRL cadence");
    // A CRL must be replaced before it expires, or relying parties that hard-fail see none valid.
    if (cadence.validityMs <= cadence.intervalMs) throw new Error("CRL validity must exceed the regeneration interval");
    if ((shard === null) !== (distributionPointUrl === null)) throw new Error("a CRL partition needs its URL, a full CRL has none");
    this.scope = { issuerKeyId: issuer.keyIdHex, shard };
  }

  get keyIdHex(): string {
    return this.scope.issuerKeyId;
  }

  current(): PublishedCrl | null {
    return this.#current;
  }

  /** What is wrong with this scope's publication now; empty when nothing is. */
  problems(): string[] {
    const name = this.#name();
    const out: string[] = [];
    if (this.#failure) out.push(`${name}: publication failing since ${this.#failure.at.toISOString()}: ${this.#failure.message}`);
    const cur = this.#current;
    if (!cur) out.push(`${name}: no CRL published`);
    else if (this.clock.now() >= cur.nextUpdate) out.push(`${name}: served CRL #${cur.crlNumber} is past its nextUpdate ${cur.nextUpdate.toISOString()}`);
    return out;
  }

  /**
   * Loads the stored CRL and, when it is stale or misses a revocation, signs a new one, waiting
   * for it at most `START_WAIT_MS`: a huge list keeps being built in the background while the
   * stored CRL is served. Never rejects: a CRL that cannot be built is a reported problem
   * (problems(), the log), not a reason for the daemon not to start.
   */
  async start(): Promise<void> {
    if (this.lease && !this.lease.holds(this.scope)) {
      // Another replica writes this scope: serve what it stored (none yet: it is being signed).
      await this.refreshFromStore().catch(() => {});
      return;
    }
    let state: StoredCrl | null = null;
    let why: string | null;
    try {
      state = await this.store.getCrl(this.scope);
      why = await this.#whyNotReuse(state);
    } catch (err) {
      why = `stored CRL unreadable: ${(err as Error).message}`;
    }
    // A regeneration (a revocation's) may have stored and served a newer CRL while these reads
    // were awaited: the served number never goes back.
    if (state && state.crlNumber > (this.#current?.crlNumber ?? 0)) this.#current = publishedFrom(state);
    if (state && why === null) {
      this.observer?.serving(this.scope, state.entries);
      this.log.info({ issuer: this.keyIdHex, shard: this.#shardField(), crlNumber: state.crlNumber, nextUpdate: state.nextUpdate }, "serving the stored CRL");
      return;
    }
    this.#dirty = true;
    const built = this.regenerate(why ?? "no CRL stored").then(
      () => {},
      () => {},
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([built, new Promise<void>((resolve) => (timer = setTimeout(resolve, START_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** Feed listener: a revocation in this scope re-signs after a short debounce. */
  notify(events: readonly RevocationEvent[]): void {
    if (this.#stopped || !events.some((e) => this.#inScope(e))) return;
    this.#dirty = true;
    if (this.#debounce) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      void this.regenerate("revocation").catch(() => {});
    }, this.cadence.debounceMs);
  }

  /**
   * A scope another replica writes (it holds the lease): serve the latest CRL it stored, read only
   * when its number is above the one served. Called every second or so; a no-op for the writer.
   */
  async refreshFromStore(): Promise<void> {
    if (!this.lease || this.lease.holds(this.scope) || this.#stopped) return;
    const summary = await this.store.crlSummaryOf(this.scope);
    if (!summary || summary.crlNumber <= (this.#current?.crlNumber ?? 0)) return;
    const state = await this.store.getCrl(this.scope);
    if (!state || state.crlNumber <= (this.#current?.crlNumber ?? 0)) return;
    this.#current = publishedFrom(state);
    this.#lastEntries = state.entries;
    this.#dirty = false;
    this.#failure = null;
    this.observer?.serving(this.scope, state.entries);
  }

  /** The periodic job: re-signs when the interval has passed, or when an earlier attempt left work. */
  async regenerateIfDue(): Promise<void> {
    if (this.#running) return;
    if (this.lease && !this.lease.holds(this.scope)) return this.refreshFromStore().catch(() => {});
    const why = this.#whyDue();
    if (why) await this.regenerate(why).catch(() => {});
  }

  /**
   * Signs, stores and then serves a new CRL; rejects (and keeps serving the old one) on failure,
   * which is also logged and kept for problems(). Requests made while one runs share the next run.
   * Every run goes through the build queue, which runs one job at a time: the store's reads and
   * writes of one run are awaited, but no other run (of this scope or any) starts in between, so
   * the number read, incremented and stored is never raced by this process (saveCrl's guard
   * catches another process).
   */
  regenerate(why: string): Promise<PublishedCrl> {
    const run = this.queue.run(() => (this.#stopped ? Promise.reject(new Error("CRL publisher stopped")) : this.#regenerateNow(why)));
    this.#running = run;
    const settle = () => {
      if (this.#running === run) this.#running = null;
    };
    run.then(settle, settle);
    return run;
  }

  /** Cancels a pending debounce and waits for a regeneration in flight (the store may close next). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = null;
    await this.#running?.catch(() => {});
  }

  #inScope(e: RevocationEvent): boolean {
    return e.issuerKeyId === this.keyIdHex && (this.scope.shard === null || e.crlShard === this.scope.shard);
  }

  #name(): string {
    return this.scope.shard === null ? `CRL of ${this.keyIdHex}` : `CRL partition ${this.scope.shard} of ${this.keyIdHex}`;
  }

  #shardField(): number | "full" {
    return this.scope.shard ?? "full";
  }

  #whyDue(): string | null {
    const now = this.clock.now().getTime();
    const cur = this.#current;
    if (!cur) return "no CRL yet";
    if (this.#dirty && !this.#debounce) return "revocations not yet published";
    if (now - cur.thisUpdate.getTime() >= this.cadence.intervalMs) return "interval";
    if (now >= cur.nextUpdate.getTime()) return "nextUpdate reached";
    return null;
  }

  /** Null when the stored CRL can be served as is after a restart; otherwise why not. */
  async #whyNotReuse(state: StoredCrl | null): Promise<string | null> {
    if (!state) return "no CRL stored";
    const now = this.clock.now();
    if (now.getTime() - state.thisUpdate.getTime() >= this.cadence.intervalMs) return "stored CRL is older than crl.interval";
    if (now >= state.nextUpdate) return "stored CRL has expired";
    try {
      const w = await walkCrlAsync(state.der);
      if (w.crlNumber !== state.crlNumber) return "stored CRL does not carry its recorded number";
      if (!w.authorityKeyId || Buffer.from(w.authorityKeyId).toString("hex") !== this.keyIdHex) return "stored CRL is another issuer's";
      if (w.distributionPointUrl !== this.distributionPointUrl) return "stored CRL names another distribution point (publicUrl changed?)";
    } catch {
      return "stored CRL does not parse";
    }
    // Revocations committed while the daemon was down (fleetca revoke): the stored list misses
    // them. Certificates that expired since may stay listed until the next interval (§3.3).
    const touched = await this.store.shardsRevokedAfter(this.keyIdHex, state.revocationSeq);
    if (touched.some((s) => this.scope.shard === null || s === this.scope.shard)) return "revocations since the stored CRL was signed";
    // What the stored CRL was built from, counted again: catches a revocation written without
    // its log row (a restored backup, a hand edit), at the cost of one index scan.
    if ((await this.store.countRevoked(this.scope, state.thisUpdate)) !== state.entries) return "stored CRL does not list what the database holds";
    return null;
  }

  async #regenerateNow(why: string): Promise<PublishedCrl> {
    if (this.lease && !this.lease.holds(this.scope)) {
      // Not ours to sign: the holder publishes (a revocation reached it too); serve its CRL.
      await this.refreshFromStore();
      if (!this.#current) throw new Error("no CRL stored yet; the replica holding this scope's lease signs it");
      return this.#current;
    }
    const started = performance.now();
    // UTCTime / GeneralizedTime carry whole seconds (RFC 5280 §5.1.2.4): truncate first, so
    // the store, Last-Modified and the signed bytes all say the same instant.
    const now = Math.floor(this.clock.now().getTime() / 1000) * 1000;
    const thisUpdate = new Date(now);
    const notAfter = Math.floor(this.issuer.info.notAfter.getTime() / 1000) * 1000;
    const nextUpdate = new Date(Math.min(now + this.cadence.validityMs, notAfter));
    // Clear the flag and read the log position before the entries: a revocation committed from
    // here on marks the scope dirty again and is newer than the seq stored with this CRL.
    this.#dirty = false;
    try {
      const revocationSeq = await this.store.latestRevocationSeq();
      for (let attempt = 0; attempt < 3; attempt++) {
        // Only the number and size: reading a stored CRL of tens of megabytes here would stall.
        const stored = await this.store.crlSummaryOf(this.scope);
        const crlNumber = Math.max(stored?.crlNumber ?? 0, this.#current?.crlNumber ?? 0) + 1;
        // RFC 5280 §3.3 lets a CA drop an entry once the certificate has expired: a relying party
        // rejects an expired certificate anyway, and the CRL stays as small as the live fleet's.
        const built = await buildCrl(this.issuer, { crlNumber, thisUpdate, nextUpdate, distributionPointUrl: this.distributionPointUrl }, (after, size) =>
          this.store.revokedPage(this.scope, thisUpdate, after as SerialHex | null, size),
          // Sizes the buffer: the list rarely changes much between two CRLs of a scope.
          Math.max(stored?.entries ?? 0, this.#lastEntries),
        );
        const state: StoredCrl = { ...this.scope, crlNumber, thisUpdate, nextUpdate, entries: built.entries, revocationSeq, der: built.der };
        // Store before hand-out: the guarded write fails if this number was already used, or
        // (replicas) if this process no longer holds the scope's lease.
        if (!(await (this.lease ? this.lease.save(state) : this.store.saveCrl(state)))) {
          if (this.lease && !this.lease.holds(this.scope)) return this.#regenerateNow(why);
          continue;
        }
        this.#current = publishedFrom(state);
        this.#lastEntries = built.entries;
        this.#failure = null;
        const elapsedMs = performance.now() - started;
        this.observer?.built(this.scope, built.entries, elapsedMs / 1000);
        this.observer?.serving(this.scope, built.entries);
        const buildMs = Math.round(elapsedMs);
        this.log.info({ issuer: this.keyIdHex, shard: this.#shardField(), crlNumber, entries: built.entries, bytes: built.der.length, buildMs, nextUpdate, why }, "CRL published");
        return this.#current;
      }
      throw new Error("another writer kept storing a higher CRL number");
    } catch (err) {
      this.#dirty = true;
      this.#failure = { at: this.clock.now(), message: (err as Error).message };
      if (!this.#stopped) this.log.error({ err, issuer: this.keyIdHex, shard: this.#shardField(), why }, "CRL publication failed; the previous CRL stays served and the next tick retries");
      throw err;
    }
  }
}

export function publishedFrom(s: StoredCrl): PublishedCrl {
  return { der: s.der, crlNumber: s.crlNumber, thisUpdate: s.thisUpdate, nextUpdate: s.nextUpdate };
}
