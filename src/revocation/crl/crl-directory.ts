import { CaError } from "../../core/errors.js";
import type { RevocationEvent } from "../../storage/ports.js";
import type { CrlPublisher, PublishedCrl } from "./crl-publisher.js";

/**
 * The CRL publishers of every issuer that still answers for what it issued, by issuer key id:
 * today the one online intermediate; after a rotation, the retired ones too (SPEC: "old one
 * keeps answering for what it issued"). `/crl` serves the current issuer's.
 */
export class CrlDirectory {
  readonly #byKeyId: ReadonlyMap<string, CrlPublisher>;

  constructor(
    publishers: readonly CrlPublisher[],
    private readonly currentKeyIdHex: string,
  ) {
    this.#byKeyId = new Map(publishers.map((p) => [p.keyIdHex, p]));
    if (!this.#byKeyId.has(currentKeyIdHex)) throw new Error("the current issuer has no CRL publisher");
  }

  /** The current issuing intermediate's CRL. */
  currentCrl(): PublishedCrl {
    return this.#crlOf(this.#byKeyId.get(this.currentKeyIdHex)!);
  }

  /** The CRL of the issuer with this key id (lower-case hex SKI), or undefined for no such issuer. */
  crlFor(keyIdHex: string): PublishedCrl | undefined {
    const p = this.#byKeyId.get(keyIdHex);
    return p ? this.#crlOf(p) : undefined;
  }

  /** RevocationFeed listener. */
  readonly onRevocations = (events: RevocationEvent[]): void => {
    for (const p of this.#byKeyId.values()) p.notify(events);
  };

  /** Loads or signs every issuer's CRL; resolves when all can be served. */
  async start(): Promise<void> {
    await Promise.all([...this.#byKeyId.values()].map((p) => p.start()));
  }

  /** The periodic job (daemon tick). */
  async regenerateDue(): Promise<void> {
    await Promise.all([...this.#byKeyId.values()].map((p) => p.regenerateIfDue()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#byKeyId.values()].map((p) => p.stop()));
  }

  #crlOf(p: CrlPublisher): PublishedCrl {
    const crl = p.current();
    // start() resolves before the public listener opens, so this is a wiring bug, never a client's fault.
    if (!crl) throw new CaError("internal", `no CRL signed yet for issuer ${p.keyIdHex}`);
    return crl;
  }
}
