import type { Logger } from "pino";
import type { RevocationEvent, RevocationLog } from "../storage/ports.js";

export type RevocationListener = (events: RevocationEvent[]) => void;

/**
 * Follows the revocation log so CRL and OCSP publishers learn of every revocation within
 * seconds: at once for revocations made through this daemon (`poll()` is called right after the
 * commit), within one poll interval for those made by another process (`fleetca revoke` writes
 * the database directly). Publishers build their initial state from the database itself; the
 * feed only reports what was committed after `start()`.
 *
 * Reading the log is asynchronous, so polls asked for while one is reading (a revocation's poll
 * during the timer's) do not read on their own: they would read from the same cursor and deliver
 * the same events twice. One read runs at a time; a poll asked for during it is answered by one
 * more read after it, which starts after the caller's commit and so sees it. Each read advances
 * the cursor past what it delivers, in seq order: no event is delivered twice or skipped.
 */
export class RevocationFeed {
  #cursor = 0;
  #timer: NodeJS.Timeout | null = null;
  readonly #listeners = new Set<RevocationListener>();
  /** The cursor's first read (start()); polls wait for it, as a poll before start() reports nothing. */
  #started: Promise<void> | null = null;
  #reading: Promise<void> | null = null;
  /** A poll was asked for after the read under way began: it reads once more. */
  #again = false;
  #stopped = false;

  constructor(
    private readonly source: RevocationLog,
    private readonly pollMs: number,
    private readonly log: Logger,
  ) {}

  /** Takes the log's position as the cursor; resolves once it is read (rejects if it cannot be). */
  start(): Promise<void> {
    this.#started ??= this.source.latestRevocationSeq().then((seq) => {
      this.#cursor = seq;
      if (this.pollMs > 0 && !this.#stopped) {
        this.#timer = setInterval(() => void this.poll(), this.pollMs);
        this.#timer.unref();
      }
    });
    return this.#started;
  }

  /** Stops polling; resolves once a read under way is done, so nothing reads a store about to close. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#reading;
  }

  subscribe(listener: RevocationListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Delivers revocations committed before this call and since the last delivery; resolves once
   * they are delivered. Never rejects: a failed read or a listener's failure is logged, not fatal
   * (the next poll reads from where the last delivery ended). Before start() there is nothing to
   * report.
   */
  poll(): Promise<void> {
    if (!this.#started || this.#stopped) return Promise.resolve();
    if (this.#reading) {
      this.#again = true;
      return this.#reading;
    }
    this.#reading = this.#readUntilCurrent().finally(() => (this.#reading = null));
    return this.#reading;
  }

  async #readUntilCurrent(): Promise<void> {
    try {
      await this.#started;
    } catch {
      return;
    }
    do {
      this.#again = false;
      await this.#readOnce();
    } while (this.#again && !this.#stopped);
  }

  async #readOnce(): Promise<void> {
    let events: RevocationEvent[];
    try {
      events = await this.source.revocationsAfter(this.#cursor, 10_000);
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
