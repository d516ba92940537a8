import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { SerialHex } from "../../core/serial.js";
import type { CertificateStatus, OcspAnswerStore, StoredOcspAnswer } from "../../storage/ports.js";
import type { OcspIssuer } from "./ocsp-issuer.js";
import { signOcspResponse, wholeSeconds, type CertStatusAnswer } from "./ocsp-response.js";

/** Certificates signed between two writes (one transaction, one fsync) and two yields to the event loop. */
const DEFAULT_BATCH = 128;
/** Signatures in flight at once (thread-pool jobs), per pass. */
const DEFAULT_IN_FLIGHT = 2;

/** thisUpdate/nextUpdate for an answer signed at `now`: never past the issuer's own notAfter, whose signature would not verify then. */
export function validityWindow(now: Date, lifeMs: number, issuerNotAfter: Date): { thisUpdate: Date; nextUpdate: Date; refreshAt: Date } {
  const thisUpdate = wholeSeconds(now);
  const end = Math.min(thisUpdate.getTime() + lifeMs, issuerNotAfter.getTime());
  const nextUpdate = wholeSeconds(new Date(Math.max(end, thisUpdate.getTime())));
  return { thisUpdate, nextUpdate, refreshAt: new Date((thisUpdate.getTime() + nextUpdate.getTime()) / 2) };
}

/** Signs the answer for one of the issuer's certificates under its SHA-1 CertID, ready to store. */
export async function signStoredAnswer(
  issuer: OcspIssuer,
  serial: SerialHex,
  status: CertificateStatus,
  answer: CertStatusAnswer,
  now: Date,
  validityMs: number,
): Promise<StoredOcspAnswer> {
  const w = validityWindow(now, validityMs, issuer.notAfter);
  const der = await signOcspResponse(issuer, [{ certIdDer: issuer.sha1CertId(serial).der, answer, thisUpdate: w.thisUpdate, nextUpdate: w.nextUpdate }], now);
  return { issuerKeyId: issuer.keyIdHex, serial, status, der, ...w };
}

/**
 * Background pre-signing (DESIGN habit 8, as cfssl's ocsprefresh and Boulder's ocsp-updater do):
 * every unexpired certificate of each issuer gets its answer signed into the shared store, in
 * serial order, a batch per transaction, yielding to the event loop between batches so the
 * listeners keep answering. A pass signs what is missing (after start-up, a new key, new
 * certificates), what is past half its life, and what was signed for another status (a
 * revocation the responder did not re-sign itself). Passes never overlap.
 */
export class OcspPresigner {
  #pass: Promise<number> | null = null;
  #closed = false;
  #firstPass = true;

  #issuers: readonly OcspIssuer[];

  constructor(
    issuers: readonly OcspIssuer[],
    private readonly store: OcspAnswerStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: { validityMs: number; batchSize?: number; signaturesInFlight?: number },
  ) {
    this.#issuers = issuers;
  }

  /** After an intermediate rotation: the next pass signs for these issuers (a new one's certificates first get answers then). */
  setIssuers(issuers: readonly OcspIssuer[]): void {
    this.#issuers = issuers;
  }

  /** Runs a pass (or joins the running one); resolves to the number of answers signed. */
  run(): Promise<number> {
    if (this.#closed) return Promise.resolve(0);
    this.#pass ??= this.#runAll().finally(() => (this.#pass = null));
    return this.#pass;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#pass?.catch(() => {});
  }

  async #runAll(): Promise<number> {
    const first = this.#firstPass;
    this.#firstPass = false;
    let total = 0;
    for (const issuer of this.#issuers) {
      const started = performance.now();
      let signed = 0;
      try {
        signed = await this.#runIssuer(issuer);
      } catch (err) {
        this.log.error({ err, issuer: issuer.keyIdHex }, "OCSP pre-signing failed");
        continue;
      }
      total += signed;
      if (first || signed > 0) this.log.info({ issuer: issuer.keyIdHex, signed, ms: Math.round(performance.now() - started) }, "OCSP pre-signing finished");
    }
    try {
      await this.store.deleteExpiredOcspAnswers(this.clock.now());
    } catch (err) {
      this.log.error({ err }, "dropping expired OCSP answers failed");
    }
    return total;
  }

  async #runIssuer(issuer: OcspIssuer): Promise<number> {
    const batchSize = this.opts.batchSize ?? DEFAULT_BATCH;
    let cursor = "";
    let signed = 0;
    while (!this.#closed) {
      const now = this.clock.now();
      const batch = await this.store.certificatesToPresign(issuer.keyIdHex, now, cursor, batchSize);
      if (batch.length === 0) break;
      // A few signatures in flight at once: a soft signer signs in libuv's thread pool, so they
      // overlap with each other and with the event loop, but leave CPU for the requests.
      const answers: StoredOcspAnswer[] = new Array(batch.length);
      let next = 0;
      const lane = async () => {
        while (next < batch.length) {
          const i = next++;
          const c = batch[i]!;
          const answer: CertStatusAnswer = c.status === "valid" ? { status: "good" } : { status: "revoked", revokedAt: c.revokedAt!, reason: c.reason };
          answers[i] = await signStoredAnswer(issuer, c.serial, c.status, answer, now, this.opts.validityMs);
        }
      };
      await Promise.all(Array.from({ length: this.opts.signaturesInFlight ?? DEFAULT_IN_FLIGHT }, lane));
      await this.store.saveOcspAnswers(answers);
      signed += answers.length;
      cursor = batch[batch.length - 1]!.serial;
      if (batch.length < batchSize) break;
      await yieldToEventLoop();
    }
    return signed;
  }
}
