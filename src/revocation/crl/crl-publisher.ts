import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { Issuer } from "../../issuance/issuer.js";
import type { CrlState, CrlStore, RevocationEvent } from "../../storage/ports.js";
import { signCrl } from "./crl-builder.js";
import { parseCrl } from "./crl-info.js";

/** The CRL a publisher serves now, exactly as stored in crl_state. */
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

/**
 * Keeps one issuer's CRL signed ahead and in memory (DESIGN habit 8; Boulder crl/updater):
 * re-signs it every `intervalMs`, and shortly after revocations of that issuer's certificates,
 * coalescing bursts so a thousand revocations cost a handful of signatures, not a thousand.
 * Every new CRL is stored, with its number, before it is served (DESIGN habit 2), so the number
 * only goes up across restarts (RFC 5280 §5.2.3). Regenerations run one at a time, in order.
 */
export class CrlPublisher {
  readonly keyIdHex: string;
  #current: PublishedCrl | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #debounce: NodeJS.Timeout | null = null;
  /** A revocation (or a failed attempt) not yet in a stored CRL: the next tick regenerates. */
  #dirty = false;
  #stopped = false;

  constructor(
    private readonly issuer: Issuer,
    private readonly store: CrlStore,
    private readonly clock: Clock,
    private readonly cadence: CrlCadence,
    private readonly log: Logger,
  ) {
    if (!(cadence.intervalMs > 0) || cadence.debounceMs < 0) throw new Error("invalid CRL cadence");
    // A CRL must be replaced before it expires, or relying parties that hard-fail see none valid.
    if (cadence.validityMs <= cadence.intervalMs) throw new Error("CRL validity must exceed the regeneration interval");
    this.keyIdHex = issuer.keyIdHex;
  }

  current(): PublishedCrl | null {
    return this.#current;
  }

  /**
   * Serves the stored CRL when it is still fresh and still lists exactly the database's
   * revocations; otherwise signs a new one. Resolves once a CRL is ready to serve.
   */
  async start(): Promise<void> {
    const state = this.store.getCrlState(this.keyIdHex);
    const why = this.#whyNotReuse(state);
    if (state && why === null) {
      this.#current = publishedFrom(state);
      this.log.info({ issuer: this.keyIdHex, crlNumber: state.crlNumber, nextUpdate: state.nextUpdate }, "serving the stored CRL");
      return;
    }
    await this.regenerate(why ?? "no CRL stored");
  }

  /** Feed listener: a revocation of one of this issuer's certificates re-signs after a short debounce. */
  notify(events: readonly RevocationEvent[]): void {
    if (this.#stopped || !events.some((e) => e.issuerKeyId === this.keyIdHex)) return;
    this.#dirty = true;
    if (this.#debounce) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      this.regenerate("revocation").catch(this.#logFailure);
    }, this.cadence.debounceMs);
  }

  /** The periodic job: re-signs when the interval has passed, or when an earlier attempt left work. */
  regenerateIfDue(): Promise<void> {
    return this.#enqueue(async () => {
      const why = this.#whyDue();
      if (why) await this.#regenerateNow(why);
    }).catch(this.#logFailure);
  }

  /** Signs, stores and then serves a new CRL; rejects (and keeps serving the old one) on failure. */
  regenerate(why: string): Promise<PublishedCrl> {
    return this.#enqueue(() => this.#regenerateNow(why));
  }

  /** Cancels a pending debounce and waits for a regeneration in flight (the store may close next). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = null;
    await this.#queue.catch(() => {});
  }

  /** The old CRL stays served; `#dirty` makes the next tick try again. */
  readonly #logFailure = (err: unknown): void => {
    if (!this.#stopped) this.log.error({ err, issuer: this.keyIdHex }, "CRL regeneration failed; retried at the next tick");
  };

  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => (this.#stopped ? Promise.reject(new Error("CRL publisher stopped")) : job()));
    this.#queue = run.catch(() => {});
    return run;
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
  #whyNotReuse(state: CrlState | null): string | null {
    if (!state) return "no CRL stored";
    const now = this.clock.now();
    if (now.getTime() - state.thisUpdate.getTime() >= this.cadence.intervalMs) return "stored CRL is older than crl.interval";
    if (now >= state.nextUpdate) return "stored CRL has expired";
    let listed: string[];
    try {
      const info = parseCrl(state.der);
      if (info.crlNumber !== state.crlNumber) return "stored CRL does not carry its recorded number";
      if (!info.authorityKeyId || Buffer.from(info.authorityKeyId).toString("hex") !== this.keyIdHex) return "stored CRL is another issuer's";
      listed = info.entries.map((e) => e.serial);
    } catch {
      return "stored CRL does not parse";
    }
    // Revocations committed while the daemon was down (fleetca revoke) and certificates that
    // expired since: either way the stored list is no longer the one to publish.
    const due = new Set<string>(this.store.revokedUnexpired(this.keyIdHex, now).map((e) => e.serial));
    if (listed.length !== due.size || listed.some((s) => !due.has(s))) return "stored CRL does not match the revocations in the database";
    return null;
  }

  async #regenerateNow(why: string): Promise<PublishedCrl> {
    // UTCTime / GeneralizedTime carry whole seconds (RFC 5280 §5.1.2.4): truncate first, so
    // crl_state, Last-Modified and the signed bytes all say the same instant.
    const now = Math.floor(this.clock.now().getTime() / 1000) * 1000;
    const thisUpdate = new Date(now);
    const nextUpdate = new Date(Math.min(now + this.cadence.validityMs, this.issuer.info.notAfter.getTime()));
    // Read after clearing the flag: a revocation committed from here on marks it again.
    this.#dirty = false;
    try {
      // RFC 5280 §3.3 lets a CA drop an entry once the certificate has expired ("entries ... may
      // be removed after the certificate's validity period ends"): a relying party rejects an
      // expired certificate anyway, and the CRL stays as small as the live fleet's revocations.
      const entries = this.store.revokedUnexpired(this.keyIdHex, thisUpdate);
      for (let attempt = 0; attempt < 3; attempt++) {
        const stored = this.store.getCrlState(this.keyIdHex);
        const crlNumber = Math.max(stored?.crlNumber ?? 0, this.#current?.crlNumber ?? 0) + 1;
        const signed = await signCrl(this.issuer, { crlNumber, thisUpdate, nextUpdate, entries });
        const state: CrlState = { issuerKeyId: this.keyIdHex, crlNumber, thisUpdate, nextUpdate, der: signed.der };
        // Store before hand-out: the guarded write fails if this number was already used.
        if (!this.store.saveCrlState(state)) continue;
        this.#current = publishedFrom(state);
        this.log.info({ issuer: this.keyIdHex, crlNumber, entries: entries.length, nextUpdate, why }, "CRL published");
        return this.#current;
      }
      throw new Error("another writer kept storing a higher CRL number");
    } catch (err) {
      this.#dirty = true;
      throw err;
    }
  }
}

function publishedFrom(s: CrlState): PublishedCrl {
  return { der: s.der, crlNumber: s.crlNumber, thisUpdate: s.thisUpdate, nextUpdate: s.nextUpdate };
}
