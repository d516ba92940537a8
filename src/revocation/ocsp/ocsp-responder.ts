import { CaError } from "../../core/errors.js";
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { SerialHex } from "../../core/serial.js";
import type { Issuer } from "../../issuance/issuer.js";
import type { CertificateStatusLookup, CertificateStatusRecord, OcspAnswerStore, RevocationEvent, StoredOcspAnswer } from "../../storage/ports.js";
import { ExactRequestMap, requestKey } from "./exact-request-map.js";
import { OcspCache, type PresignedResponse } from "./ocsp-cache.js";
import { OcspIssuer } from "./ocsp-issuer.js";
import { validityWindow } from "./ocsp-presigner.js";
import { certIdKey, parseOcspRequest, type CertIdQuery } from "./ocsp-request.js";
import { ocspFailure, signOcspResponse, type CertStatusAnswer, type OcspFailure } from "./ocsp-response.js";
import type { SigningBudget } from "./signing-budget.js";

export interface OcspResponderOptions {
  /** nextUpdate − thisUpdate of a good or revoked answer (config `ocsp.validity`). */
  validityMs: number;
  /** Life of an "unknown" answer: short, so a serial that shows up later is not denied for long. */
  unknownValidityMs?: number;
  /** Pre-signed responses kept for known certificates (LRU). */
  maxEntries?: number;
  /** Pre-signed "unknown" responses kept (LRU of their own). */
  maxUnknownEntries?: number;
  /** Exact request bytes remembered (ExactRequestMap). */
  maxExactRequests?: number;
  /** The shared pre-signed answers (database); without it, answers live in this process only. */
  store?: OcspAnswerStore;
  /**
   * Whether answers this process signs are written to the store for the others (default true).
   * A public worker reads the store and writes nothing: the primary's pre-signer keeps it.
   */
  shareSigned?: boolean;
  /**
   * Whether a revocation's answers are re-signed here at once (default: always). Replicas on one
   * database: only the lease holder re-signs (and stores) them; the others drop theirs and take
   * the stored answer at the next request, or sign one then if it is not stored yet.
   */
  resignOnRevocation?: () => boolean;
  /** Bounds the fresh signatures requests may cause, per client; without it they are not bounded. */
  budget?: SigningBudget;
  /**
   * Sign the answers a request asks for (a nonce, several CertIDs) on the event loop's thread
   * instead of libuv's pool (Signer.signOnThisThread). For public workers, one process per core:
   * their thread has nothing else to do meanwhile, and the hand-off costs half a signature more
   * CPU. Pre-signing and refreshes stay in the pool. Default false.
   */
  signOnThisThread?: boolean;
}

/** What the HTTP layer needs to send an answer. */
export interface OcspAnswer {
  /** A DER OCSPResponse: signed when `outcome` is successful, a bare status otherwise. */
  der: Uint8Array;
  outcome: "successful" | OcspFailure;
  /**
   * Set when HTTP caches may keep the answer until nextUpdate (RFC 5019 §6.2); null for answers
   * to a nonce request and for failures, which must never be cached.
   */
  freshness: { thisUpdate: Date; nextUpdate: Date; etag: string } | null;
  /** What the answer says (for metrics): the certificate's status, "multiple" for several CertIDs, or the failure. */
  status: OcspAnswerStatus;
  /**
   * What answered (for metrics): the exact request bytes seen before ("cached", no parsing), a
   * pre-signed answer for the CertID ("presigned", from memory, the store, or signed to be kept),
   * a signature for this request alone ("signed": a nonce, several CertIDs), nothing ("none": a failure).
   */
  source: OcspAnswerSource;
}

export type OcspAnswerStatus = CertStatusAnswer["status"] | "multiple" | OcspFailure;
export type OcspAnswerSource = "cached" | "presigned" | "signed" | "none";

/** The client a request is charged to when the caller names none (in-process callers). */
export const LOCAL_CLIENT = "local";

const DEFAULT_UNKNOWN_VALIDITY_MS = 60_000;
const DEFAULT_MAX_ENTRIES = 20_000;
const DEFAULT_MAX_UNKNOWN_ENTRIES = 1_000;
const DEFAULT_MAX_EXACT_REQUESTS = 50_000;

/** Why no pre-signed answer could be given without a signature the budget does not allow. */
type Refusal = "unauthorized" | "tryLater";

interface Flight {
  /** Identifies this signing: a revocation replaces it, and the detached one then keeps nothing. */
  token: symbol;
  query: CertIdQuery;
  issuer: OcspIssuer;
  promise: Promise<PresignedResponse | Refusal>;
}

/**
 * RFC 6960 responder for fleetca's issuers (DESIGN habit 8, after Boulder's ocsp/responder and
 * cfssl's ocsp/responder). Single-CertID requests without a nonce — what TLS stapling and most
 * clients send — are answered with pre-signed bytes: first by the exact request bytes (no
 * parsing), then by CertID from memory, then from the shared store that the background
 * pre-signer (ocsp-presigner.ts) fills for every certificate. Answers are re-signed before half
 * their life and at once when a revocation comes through the RevocationFeed, so a revoked
 * certificate never keeps a "good" answer. Fresh signatures asked for by requests (a nonce,
 * several CertIDs, an answer not pre-signed) are bounded by a per-client SigningBudget.
 */
export class OcspResponder {
  #issuers: readonly OcspIssuer[];
  readonly #cache: OcspCache;
  readonly #exact: ExactRequestMap;
  /** One signing per CertID at a time; a revocation detaches a running one so its stale result is not kept. */
  readonly #inflight = new Map<string, Flight>();
  readonly #validityMs: number;
  readonly #unknownValidityMs: number;
  readonly #store: OcspAnswerStore | undefined;
  readonly #budget: SigningBudget | undefined;
  readonly #shareSigned: boolean;
  readonly #resignOnRevocation: () => boolean;
  readonly #signOnThisThread: boolean;
  /** The running sweep, so a second tick does not start another and close() can wait for it. */
  #sweep: Promise<{ refreshed: number; dropped: number }> | null = null;
  #closed = false;

  constructor(
    issuers: Issuer[],
    private readonly certificates: CertificateStatusLookup,
    private readonly clock: Clock,
    private readonly log: Logger,
    opts: OcspResponderOptions,
  ) {
    if (issuers.length === 0) throw new Error("an OCSP responder needs at least one issuer");
    if (!(opts.validityMs >= 60_000)) throw new Error("OCSP validity must be at least one minute");
    this.#issuers = issuers.map((i) => new OcspIssuer(i));
    this.#validityMs = opts.validityMs;
    this.#unknownValidityMs = Math.min(opts.unknownValidityMs ?? DEFAULT_UNKNOWN_VALIDITY_MS, opts.validityMs);
    this.#cache = new OcspCache(opts.maxEntries ?? DEFAULT_MAX_ENTRIES, opts.maxUnknownEntries ?? DEFAULT_MAX_UNKNOWN_ENTRIES);
    this.#exact = new ExactRequestMap(opts.maxExactRequests ?? DEFAULT_MAX_EXACT_REQUESTS);
    this.#store = opts.store;
    this.#budget = opts.budget;
    this.#shareSigned = opts.shareSigned ?? true;
    this.#resignOnRevocation = opts.resignOnRevocation ?? (() => true);
    this.#signOnThisThread = opts.signOnThisThread ?? false;
  }

  /** The issuers as OCSP sees them (for the background pre-signer). */
  get issuers(): readonly OcspIssuer[] {
    return this.#issuers;
  }

  /**
   * After an intermediate rotation: answer for these issuers from now on (RFC 6960 §2.2: each
   * for the certificates it issued). Those already served keep their OcspIssuer (the cache and
   * signings in flight refer to it); a dropped issuer's cached answers are no longer served.
   */
  setIssuers(issuers: readonly Issuer[]): void {
    if (issuers.length === 0) throw new Error("an OCSP responder needs at least one issuer");
    const kept = new Map(this.#issuers.map((i) => [i.keyIdHex, i]));
    this.#issuers = issuers.map((i) => kept.get(i.keyIdHex) ?? new OcspIssuer(i));
  }

  /**
   * The answer to request bytes seen before, without parsing or awaiting anything; undefined
   * when these bytes are not remembered (then `respond()`).
   */
  answerFromMemory(request: Uint8Array | string): OcspAnswer | undefined {
    const nowMs = this.clock.now().getTime();
    const e = this.#exact.get(typeof request === "string" ? request : requestKey(request), nowMs);
    if (!e) return undefined;
    e.lastServedAt = nowMs;
    return answerOf(e, "cached");
  }

  /**
   * Answers one DER OCSPRequest from `client` (the remote address, for the signing budget);
   * `alias` is another key the answer may be remembered under (a GET's path, getPathKey). Never throws: a fault becomes internalError (RFC 6960 §4.2.1).
   */
  async respond(requestDer: Uint8Array, client: string = LOCAL_CLIENT, alias?: string): Promise<OcspAnswer> {
    const remembered = this.answerFromMemory(requestDer);
    if (remembered) return remembered;
    const parsed = parseOcspRequest(requestDer);
    if (!parsed.ok) {
      this.log.debug({ reason: parsed.reason }, "malformed OCSP request");
      return failure("malformedRequest");
    }
    const { certIds, nonce } = parsed.query;
    const issuer = this.#issuerOf(certIds);
    if (!issuer) return failure("unauthorized");
    try {
      if (certIds.length === 1 && !nonce) {
        const e = await this.#presigned(certIds[0]!, issuer, client);
        if (typeof e === "string") return failure(e);
        if (!e.retired) {
          this.#exact.remember(requestKey(requestDer), e);
          if (alias) this.#exact.remember(alias, e);
        }
        return answerOf(e, "presigned");
      }
      if (!this.#budget || this.#budget.take(client)) {
        try {
          return await this.#signNow(certIds, issuer, nonce);
        } catch (err) {
          // The status cannot be read now (the database is down): a single CertID still gets the
          // answer held in memory, its nonce ignored as RFC 6960 §4.4.1 allows; better than none.
          const held = certIds.length === 1 ? this.#heldAnswer(certIds[0]!) : undefined;
          if (!held) throw err;
          this.log.warn({ err: (err as Error).message, serial: certIds[0]!.serial }, "OCSP status unreadable; serving the pre-signed answer held in memory, without the nonce");
          return { ...answerOf(held, "presigned"), freshness: null };
        }
      }
      // Over this client's budget. RFC 6960 §4.4.1 lets a responder ignore the nonce: a single
      // CertID gets its pre-signed answer (no signature); several CertIDs are to be asked again later.
      if (certIds.length > 1) return failure("tryLater");
      const e = await this.#presigned(certIds[0]!, issuer, client);
      if (typeof e === "string") return failure(e);
      return { ...answerOf(e, "presigned"), freshness: null };
    } catch (err) {
      // The store unreachable is temporary: tryLater (RFC 6960 §2.3) tells the client to ask again.
      if (err instanceof CaError && err.code === "unavailable") {
        this.log.warn({ err: err.message }, "OCSP status unreadable: the database is unavailable; answering tryLater");
        return failure("tryLater");
      }
      this.log.error({ err }, "OCSP response could not be produced");
      return failure("internalError");
    }
  }

  /** The pre-signed answer held in memory for a CertID, while it is still valid. */
  #heldAnswer(q: CertIdQuery): PresignedResponse | undefined {
    const e = this.#cache.get(certIdKey(q));
    return e && !e.retired && this.clock.now() < e.nextUpdate ? e : undefined;
  }

  /**
   * RevocationFeed listener: drops every pre-signed answer for the revoked certificates (under
   * any CertID hash) and signs them again at once, before anyone asks, the stored SHA-1 one
   * included so every worker serves the revocation.
   */
  onRevocations(events: RevocationEvent[]): void {
    if (this.#closed) return;
    const resign = this.#resignOnRevocation();
    for (const ev of events) {
      const issuer = this.#issuers.find((i) => i.keyIdHex === ev.issuerKeyId);
      if (!issuer) continue;
      const now = this.clock.now().getTime();
      const stale = new Map<string, { query: CertIdQuery; lastServedAt: number }>();
      for (const e of this.#cache.forSerial(ev.issuerKeyId, ev.serial)) stale.set(e.key, { query: e.query, lastServedAt: e.lastServedAt });
      for (const [key, f] of this.#inflight) {
        if (f.issuer === issuer && f.query.serial === ev.serial && !stale.has(key)) stale.set(key, { query: f.query, lastServedAt: now });
      }
      if (this.#store && resign) {
        const q = issuer.sha1CertId(ev.serial);
        const key = certIdKey(q);
        if (!stale.has(key)) stale.set(key, { query: q, lastServedAt: now });
      }
      for (const [key, s] of stale) {
        this.#cache.delete(key);
        this.#inflight.delete(key);
        if (!resign) continue;
        this.#presign(key, s.query, issuer, s.lastServedAt, null).catch((err) =>
          this.log.error({ err, serial: ev.serial }, "re-signing the OCSP response of a revoked certificate failed"),
        );
      }
      if (resign) this.log.info({ serial: ev.serial, responses: stale.size }, "OCSP responses re-signed after revocation");
      else this.log.info({ serial: ev.serial, responses: stale.size }, "OCSP responses dropped after revocation; the lease holder re-signs and stores them");
    }
  }

  /**
   * The sweep (daemon tick): re-signs every pre-signed answer in memory past half its life that
   * someone asked for within the last validity period (taking the stored one when the
   * pre-signer already did); lets the others go (they are fetched or signed again if asked).
   * "Unknown" answers are never refreshed, only dropped.
   */
  refresh(): Promise<{ refreshed: number; dropped: number }> {
    if (this.#closed) return Promise.resolve({ refreshed: 0, dropped: 0 });
    this.#sweep ??= this.#refreshAll().finally(() => (this.#sweep = null));
    return this.#sweep;
  }

  /** Stops refreshing (daemon close), after the signature in progress, so nothing reads a closed store. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#exact.clear();
    await this.#sweep?.catch(() => {});
  }

  async #refreshAll(): Promise<{ refreshed: number; dropped: number }> {
    let refreshed = 0;
    let dropped = 0;
    const now = this.clock.now().getTime();
    for (const e of this.#cache.entries()) {
      if (this.#closed) break;
      if (now < e.refreshAt.getTime() || this.#cache.peek(e.key) !== e) continue;
      if (e.status === "unknown" || e.lastServedAt < now - this.#validityMs) {
        this.#cache.delete(e.key);
        dropped++;
        continue;
      }
      try {
        await this.#presign(e.key, e.query, e.issuer, e.lastServedAt, null);
        refreshed++;
      } catch (err) {
        this.log.error({ err, serial: e.query.serial }, "refreshing a pre-signed OCSP response failed");
      }
    }
    if (refreshed + dropped > 0) this.log.debug({ refreshed, dropped, cached: this.#cache.size }, "OCSP responses refreshed");
    return { refreshed, dropped };
  }

  /** The one issuer every CertID names; null when any names an issuer we don't serve, or they name different ones. */
  #issuerOf(certIds: CertIdQuery[]): OcspIssuer | null {
    // A CA-signed response speaks only for that CA's certificates (RFC 6960 §4.2.2.2), so one
    // signature cannot cover CertIDs of two issuers: such a request is refused as unauthorized.
    const issuer = this.#issuers.find((i) => i.names(certIds[0]!));
    if (!issuer) return null;
    return certIds.every((q) => issuer.names(q)) ? issuer : null;
  }

  async #presigned(q: CertIdQuery, issuer: OcspIssuer, client: string): Promise<PresignedResponse | Refusal> {
    const key = certIdKey(q);
    const now = this.clock.now();
    let e = this.#cache.get(key);
    if (!e || now >= e.refreshAt) {
      try {
        const fresh = await this.#presign(key, q, issuer, now.getTime(), client);
        if (typeof fresh === "string") {
          if (!e || now >= e.nextUpdate) return fresh;
        } else {
          e = fresh;
        }
      } catch (err) {
        // A still-valid older answer beats an error while the signer is down.
        if (!e || now >= e.nextUpdate) throw err;
        this.log.error({ err, serial: q.serial }, "re-signing an OCSP response failed; serving the previous one");
      }
    }
    e.lastServedAt = now.getTime();
    return e;
  }

  /**
   * Reads the status now, takes the stored answer when it is current, else signs one (charged to
   * `client`'s budget; null = the responder's own re-signing, never refused), and keeps it
   * unless a revocation made it stale meanwhile.
   */
  #presign(key: string, query: CertIdQuery, issuer: OcspIssuer, lastServedAt: number, client: string | null): Promise<PresignedResponse | Refusal> {
    const running = this.#inflight.get(key);
    if (running) return running.promise;
    // The flight is registered before the work starts (the status read is its first await), so a
    // second request for this CertID joins it, and it must still find itself the current flight
    // when it is done.
    const flight: Flight = { token: Symbol(key), query, issuer, promise: Promise.resolve("tryLater") };
    const token = flight.token;
    this.#inflight.set(key, flight);
    const promise = (async (): Promise<PresignedResponse | Refusal> => {
      const now = this.clock.now();
      // The status read is asynchronous (the store's port): a revocation reported while it is
      // pending detaches this flight (onRevocations), and the token checks below then keep its
      // answer out of the cache and the store, as for one reported during the signing.
      const answer = this.#answerFrom(query, issuer, query.serial === null ? null : await this.certificates.certificateStatus(query.serial as SerialHex));
      // Both reads of the cache-miss path: the in-memory paths (answerFromMemory, a current cached
      // entry in #presigned) never come here, so they await nothing.
      const stored = await this.#storedAnswer(query, issuer, answer, now);
      let entry: PresignedResponse;
      if (stored) {
        entry = { key, query, issuer, status: answer.status, answer, der: stored.der, etag: etagOf(stored.der), thisUpdate: stored.thisUpdate, nextUpdate: stored.nextUpdate, refreshAt: stored.refreshAt, lastServedAt };
      } else {
        // RFC 6960 §4.2.1 tryLater for a known certificate; a constant unauthorized (as for a CA
        // we do not serve) for an unknown serial, so made-up serials cost no signature.
        if (client !== null && this.#budget && !this.#budget.take(client)) return answer.status === "unknown" ? "unauthorized" : "tryLater";
        const w = validityWindow(now, answer.status === "unknown" ? this.#unknownValidityMs : this.#validityMs, issuer.notAfter);
        const der = await signOcspResponse(issuer, [{ certIdDer: query.der, answer, thisUpdate: w.thisUpdate, nextUpdate: w.nextUpdate }], now);
        entry = { key, query, issuer, status: answer.status, answer, der, etag: etagOf(der), ...w, lastServedAt };
        if (this.#inflight.get(key)?.token === token) await this.#storeAnswer(query, issuer, entry);
      }
      // Detached by a revocation meanwhile: served to this request only, never remembered.
      if (this.#inflight.get(key)?.token === token) this.#cache.set(entry);
      else entry.retired = true;
      return entry;
    })();
    flight.promise = promise;
    const settle = () => {
      if (this.#inflight.get(key)?.token === token) this.#inflight.delete(key);
    };
    promise.then(settle, settle);
    return promise;
  }

  /** The stored answer for a SHA-1 CertID in OpenSSL's encoding, when it is current and for the inventory's status now. */
  async #storedAnswer(q: CertIdQuery, issuer: OcspIssuer, answer: CertStatusAnswer, now: Date): Promise<StoredOcspAnswer | null> {
    if (!this.#store || answer.status === "unknown" || !this.#isStoredForm(q, issuer)) return null;
    const row = await this.#store.getOcspAnswer(issuer.keyIdHex, q.serial!);
    const status = answer.status === "good" ? "valid" : "revoked";
    return row && row.status === status && now < row.refreshAt ? row : null;
  }

  /**
   * Shares a signed answer through the store; awaited by its flight. A failed write is logged and
   * the answer still served (the pre-signer stores one later). A revocation reported during the write cannot leave a "good" row served: a reader
   * takes a row only while the inventory still says its status (#storedAnswer).
   */
  async #storeAnswer(q: CertIdQuery, issuer: OcspIssuer, e: PresignedResponse): Promise<void> {
    if (!this.#store || !this.#shareSigned || e.status === "unknown" || !this.#isStoredForm(q, issuer)) return;
    try {
      await this.#store.saveOcspAnswers([
        { issuerKeyId: issuer.keyIdHex, serial: q.serial!, status: e.status === "good" ? "valid" : "revoked", der: e.der, thisUpdate: e.thisUpdate, nextUpdate: e.nextUpdate, refreshAt: e.refreshAt },
      ]);
    } catch (err) {
      this.log.error({ err, serial: q.serial }, "storing a pre-signed OCSP answer failed");
    }
  }

  #isStoredForm(q: CertIdQuery, issuer: OcspIssuer): boolean {
    return q.hash === "sha1" && q.serial !== null && Buffer.from(q.der).equals(issuer.sha1CertId(q.serial).der);
  }

  /** Several CertIDs or a nonce: read and sign now, keep nothing (a nonce answer is for one client). */
  async #signNow(certIds: CertIdQuery[], issuer: OcspIssuer, nonce: Uint8Array | null): Promise<OcspAnswer> {
    const now = this.clock.now();
    const answers: Array<{ certIdDer: Uint8Array; answer: CertStatusAnswer; thisUpdate: Date; nextUpdate: Date }> = [];
    // One CertID after another: the inventory is read (awaited) only when no current cached answer
    // already holds the status, so a nonce request for a cached certificate still reads nothing.
    for (const q of certIds) {
      const answer =
        this.#knownStatusOf(q, issuer, now) ??
        this.#answerFrom(q, issuer, q.serial === null ? null : await this.certificates.certificateStatus(q.serial as SerialHex));
      const w = validityWindow(now, answer.status === "unknown" ? this.#unknownValidityMs : this.#validityMs, issuer.notAfter);
      answers.push({ certIdDer: q.der, answer, thisUpdate: w.thisUpdate, nextUpdate: w.nextUpdate });
    }
    const der = await signOcspResponse(issuer, answers, now, nonce, this.#signOnThisThread);
    const nextUpdate = new Date(Math.min(...answers.map((a) => a.nextUpdate.getTime())));
    return {
      der,
      outcome: "successful",
      freshness: nonce ? null : { thisUpdate: answers[0]!.thisUpdate, nextUpdate, etag: etagOf(der) },
      status: answers.length === 1 ? answers[0]!.answer.status : "multiple",
      source: "signed",
    };
  }

  /**
   * The status a current pre-signed answer for this CertID already holds (good or revoked), or
   * null. The revocation feed drops such answers the moment it reports a revocation
   * (onRevocations), so this is the status every cached answer serves, and a nonce answer says no
   * less than an answer without one; it spares the inventory read that was a tenth of a public
   * worker's time under nonce load (profile in docs/benchmarks.md). "unknown" is always read
   * again: a serial may have been issued since.
   */
  #knownStatusOf(q: CertIdQuery, issuer: OcspIssuer, now: Date): CertStatusAnswer | null {
    const e = this.#cache.peek(certIdKey(q));
    if (!e || e.retired || e.issuer !== issuer || e.answer.status === "unknown" || now >= e.nextUpdate) return null;
    return e.answer;
  }

  /**
   * RFC 6960 §2.2 from the inventory's record `r` of q's serial (null: none, or no serial):
   * good, revoked (time, reason), or unknown when not ours. Synchronous, and the callers await
   * the store's read inline, so a read costs the store's one promise and no closure.
   */
  #answerFrom(q: CertIdQuery, issuer: OcspIssuer, r: CertificateStatusRecord | null): CertStatusAnswer {
    // A serial of ours asked about under another of our issuers is not that issuer's certificate.
    if (!r || r.issuerKeyId !== issuer.keyIdHex) return { status: "unknown" };
    if (r.status === "valid") return { status: "good" };
    if (!r.revokedAt) throw new Error(`certificate ${q.serial} is revoked but has no revocation time`);
    return { status: "revoked", revokedAt: r.revokedAt, reason: r.revocationReason };
  }
}

function answerOf(e: PresignedResponse, source: "cached" | "presigned"): OcspAnswer {
  // The entry carries thisUpdate, nextUpdate and etag itself: no copy per request.
  return { der: e.der, outcome: "successful", freshness: e, status: e.status, source };
}

function failure(outcome: OcspFailure): OcspAnswer {
  return { der: ocspFailure(outcome), outcome, freshness: null, status: outcome, source: "none" };
}

/** A strong HTTP validator (RFC 9110 §8.8.3): the bytes' digest, so equal bytes have equal tags. */
function etagOf(der: Uint8Array): string {
  return `"${createHash("sha256").update(der).digest("base64url").slice(0, 27)}"`;
}
