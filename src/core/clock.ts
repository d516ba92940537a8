/**
 * Time is injected everywhere (DESIGN habit 4): domain code never calls Date.now(),
 * so tests can freeze or advance time without sleeping.
 */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock the caller moves by hand; for tests and for simulating the future. */
export class ManualClock implements Clock {
  #t: number;
  constructor(start: Date = new Date()) {
    this.#t = start.getTime();
  }
  now(): Date {
    return new Date(this.#t);
  }
  advance(ms: number): void {
    this.#t += ms;
  }
  set(t: Date): void {
    this.#t = t.getTime();
  }
}
