import type { Clock } from "../../core/clock.js";

export interface SigningBudgetOptions {
  /** Fresh signatures a second one client (remote address) may cause, sustained (config `ocsp.rateLimit.perSecond`). */
  perSecond: number;
  /** Fresh signatures one client may cause at once (`ocsp.rateLimit.burst`). */
  burst: number;
  /** Fresh signatures a second for all clients together (`ocsp.rateLimit.totalPerSecond`); also the total burst. */
  totalPerSecond: number;
  /** Clients tracked at once; the least recently seen is forgotten (and comes back with a full bucket). */
  maxClients?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

const DEFAULT_MAX_CLIENTS = 10_000;

/**
 * Token buckets bounding the signatures the public listener can make the CA produce (nonce
 * requests, several CertIDs, answers not pre-signed): one per client, so one flooding client
 * does not use up another's share, and one for everyone, so a flood from many addresses is
 * bounded too. Time comes from the injected clock (DESIGN habit 4): tests refill by moving it.
 */
export class SigningBudget {
  readonly #clients = new Map<string, Bucket>();
  readonly #total: Bucket;
  readonly #maxClients: number;

  constructor(
    private readonly clock: Clock,
    private readonly opts: SigningBudgetOptions,
  ) {
    if (!(opts.perSecond > 0 && opts.burst >= 1 && opts.totalPerSecond > 0)) throw new Error("OCSP rate limits must be positive");
    this.#maxClients = opts.maxClients ?? DEFAULT_MAX_CLIENTS;
    this.#total = { tokens: opts.totalPerSecond, at: clock.now().getTime() };
  }

  /** Takes one signature from `client`'s bucket and the total; false (taking nothing) when either is empty. */
  take(client: string): boolean {
    const now = this.clock.now().getTime();
    let b = this.#clients.get(client);
    if (b) {
      this.#clients.delete(client); // re-inserted below: Map order is then least recently seen first
    } else {
      b = { tokens: this.opts.burst, at: now };
      if (this.#clients.size >= this.#maxClients) this.#clients.delete(this.#clients.keys().next().value!);
    }
    this.#clients.set(client, b);
    refill(b, now, this.opts.perSecond, this.opts.burst);
    refill(this.#total, now, this.opts.totalPerSecond, this.opts.totalPerSecond);
    if (b.tokens < 1 || this.#total.tokens < 1) return false;
    b.tokens -= 1;
    this.#total.tokens -= 1;
    return true;
  }
}

function refill(b: Bucket, now: number, perSecond: number, cap: number): void {
  if (now > b.at) b.tokens = Math.min(cap, b.tokens + ((now - b.at) / 1000) * perSecond);
  b.at = Math.max(b.at, now);
}
