import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";

/**
 * Where leases are kept (the database every replica shares): one row per lease naming its holder
 * and until when it holds. `acquire` takes the lease when it is free, expired, or already the
 * caller's (then it extends it to `until`), in one conditional write; false when another holder's
 * lease is still running.
 */
export interface LeaseStore<K> {
  acquire(key: K, holder: string, until: Date, now: Date): Promise<boolean>;
  release(key: K, holder: string): Promise<void>;
}

export interface LeaseTiming {
  /** How long an acquired lease runs: a dead holder's work moves to another replica within this. */
  leaseMs: number;
  /** How often a holder extends it (and others try to take it): well under leaseMs. */
  renewEveryMs: number;
}

/**
 * This process's holder id: the host and pid for the operator reading the lease table, and
 * random bytes so a restarted process (same pid in a new container) is not mistaken for the old.
 */
export function newHolderId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(6).toString("hex")}`;
}

interface Held {
  /** The lease is ours until this (by our clock, from before the write that extended it). */
  until: number;
}

/**
 * Keeps the leases of the work only one replica may do at a time (signing a CRL scope, tree
 * heads, pre-signing OCSP answers), as Boulder's crl-updater shards its work: every replica runs
 * a keeper over the same keys; whoever holds a key does its work and extends the lease every
 * renewEveryMs; when it dies, the lease runs out and another replica's next attempt takes it.
 *
 * `holds(key)` is conservative: the lease counts as held until `now + leaseMs` as read *before*
 * the write that extended it, so by the time any other replica can see it expired this process
 * has already stopped considering it held (given clocks agree to well within leaseMs − the work's
 * duration). That is not what makes a late write harmless, though: a holder paused past its lease
 * (GC, SIGSTOP) could still finish a write it began. The store's fenced writes (the CRL number
 * only goes up, and only for the current holder) are what make such a write fail.
 */
export class LeaseKeeper<K> {
  readonly #held = new Map<string, Held>();
  #keys: K[] = [];
  #timer: NodeJS.Timeout | null = null;
  #ticking: Promise<void> | null = null;
  #failing = false;

  constructor(
    private readonly store: LeaseStore<K>,
    readonly holder: string,
    private readonly nameOf: (k: K) => string,
    private readonly clock: Clock,
    private readonly timing: LeaseTiming,
    private readonly log: Logger,
    /** Told when this process gains or loses a lease (to publish at once, or stop). */
    private readonly onChange: (key: K, held: boolean) => void = () => {},
  ) {
    if (!(timing.renewEveryMs > 0) || timing.renewEveryMs * 2 > timing.leaseMs) throw new Error("a lease must be renewed at least twice per lease time");
  }

  /** The keys to keep (replaces the set; leases of keys no longer wanted are released). */
  track(keys: readonly K[]): void {
    const wanted = new Set(keys.map(this.nameOf));
    for (const k of this.#keys) if (!wanted.has(this.nameOf(k))) void this.#release(k);
    this.#keys = [...keys];
  }

  holds(key: K): boolean {
    const h = this.#held.get(this.nameOf(key));
    return h !== undefined && this.clock.now().getTime() < h.until;
  }

  /** Every lease kept, by name, and whether this process holds it now (as holds() says): for metrics. */
  leases(): { name: string; held: boolean }[] {
    return this.#keys.map((k) => ({ name: this.nameOf(k), held: this.holds(k) }));
  }

  /** Tries every tracked key once now (the first tick runs at start, not after a period). */
  tick(): Promise<void> {
    this.#ticking ??= this.#tick().finally(() => {
      this.#ticking = null;
    });
    return this.#ticking;
  }

  start(): Promise<void> {
    this.#timer = setInterval(() => {
      this.tick().catch((err: unknown) => this.log.error({ err }, "renewing leases failed"));
    }, this.timing.renewEveryMs);
    this.#timer.unref();
    return this.tick();
  }

  /** Stops renewing and hands back what this process holds, so another replica takes over at once. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#ticking;
    await Promise.all(this.#keys.filter((k) => this.#held.has(this.nameOf(k))).map((k) => this.#release(k)));
  }

  async #tick(): Promise<void> {
    let failure: Error | null = null;
    for (const key of this.#keys) {
      const name = this.nameOf(key);
      const now = this.clock.now();
      const until = now.getTime() + this.timing.leaseMs;
      let got: boolean;
      try {
        got = await this.store.acquire(key, this.holder, new Date(until), now);
      } catch (err) {
        // The database is unreachable: what is held stays held until it runs out by the clock
        // (holds() says so), and nothing new is taken.
        failure = err as Error;
        this.#expire(key);
        continue;
      }
      const had = this.holds(key);
      if (got) this.#held.set(name, { until });
      else this.#held.delete(name);
      if (got !== had) {
        this.log.info({ lease: name, holder: this.holder }, got ? "lease acquired" : "lease lost to another replica");
        this.onChange(key, got);
      }
    }
    if (failure && !this.#failing) this.log.error({ err: failure.message }, "cannot renew leases: the database is unreachable; work stops when they run out");
    if (!failure && this.#failing) this.log.info("leases renewed again");
    this.#failing = failure !== null;
  }

  /** A lease not renewed: held until it runs out, then dropped with a notice. */
  #expire(key: K): void {
    const name = this.nameOf(key);
    const h = this.#held.get(name);
    if (h && this.clock.now().getTime() >= h.until) {
      this.#held.delete(name);
      this.log.warn({ lease: name }, "lease ran out without renewal");
      this.onChange(key, false);
    }
  }

  async #release(key: K): Promise<void> {
    const name = this.nameOf(key);
    if (!this.#held.delete(name)) return;
    this.onChange(key, false);
    try {
      await this.store.release(key, this.holder);
    } catch {
      // It runs out by itself.
    }
  }
}
