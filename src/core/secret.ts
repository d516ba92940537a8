import { inspect } from "node:util";

const REDACTED = "[REDACTED]";

/**
 * A value that must never reach a log, an error message or a serialised object (DESIGN habit 10):
 * tokens, passphrases. Only `reveal()` hands out the value, so every use is greppable.
 */
export class Secret<T = string> {
  readonly #value: T;
  constructor(value: T) {
    this.#value = value;
  }
  reveal(): T {
    return this.#value;
  }
  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return REDACTED;
  }
}
