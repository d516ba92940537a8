import type { Logger } from "pino";
import type { RevocationEvent, RevocationLog } from "../storage/ports.js";

export type RevocationListener = (events: RevocationEvent[]) => void;

/**
 * Follows the revocation log so CRL and OCSP publishers learn of every revocation within
 * seconds: at once for revocations made through this daemon (`poll()` is called right after the
 * commit), within one poll interval for those made by another process (`fleetca revoke` writes
 * the database directly). Publishers build their initial state from the database itself; the
 * feed only reports what was committed after `start()`.
 */
export class RevocationFeed {
  #cursor = 0;
  #timer: NodeJS.Timeout | null = null;
  readonly #listeners = new Set<RevocationListener>();

  constructor(
    private readonly source: RevocationLog,
    private readonly pollMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.#cursor = this.source.latestRevocationSeq();
    if (this.pollMs > 0) {
      this.#timer = setInterval(() => this.poll(), this.pollMs);
      this.#timer.unref();
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  subscribe(listener: RevocationListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Delivers revocations committed since the last poll; a listener's failure is logged, not fatal. */
  poll(): void {
    let events: RevocationEvent[];
    try {
      events = this.source.revocationsAfter(this.#cursor, 10_000);
    } catch (err) {
      this.log.error({ err }, "reading the revocation log failed");
      return;
    }
    if (events.length === 0) return;
    this.#cursor = events[events.length - 1]!.seq;
    for (const listener of this.#listeners) {
      try {
        listener(events);
      } catch (err) {
        this.log.error({ err }, "a revocation listener failed");
      }
    }
  }
}
