import { createHash } from "node:crypto";
import type { Extension } from "@peculiar/asn1-x509";
import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { Issuer } from "../../issuance/issuer.js";
import type { CertificateLookup, RevocationEvent } from "../../storage/ports.js";
import { OcspCache, type PresignedResponse } from "./ocsp-cache.js";
import { OcspIssuer } from "./ocsp-issuer.js";
import { certIdKey, parseOcspRequest, type CertIdQuery } from "./ocsp-request.js";
import { ocspFailure, signOcspResponse, wholeSeconds, type CertStatusAnswer, type OcspFailure } from "./ocsp-response.js";

export interface OcspResponderOptions {
  /** nextUpdate − thisUpdate of a good or revoked answer (config `ocsp.validity`). */
  validityMs: number;
  /** Life of an "unknown" answer: short, so a serial that shows up later is not denied for long. */
  unknownValidityMs?: number;
  /** Pre-signed responses kept for known certificates (LRU). */
  maxEntries?: number;
  /** Pre-signed "unknown" responses kept (LRU of their own). */
  maxUnknownEntries?: number;
}

/** What the HTTP layer needs to send an answer. */
export interface OcspAnswer {
  /** A DER OCSPResponse: signed when `outcome` is successful, a bare status otherwise. */
  der: Uint8Array;
  outcome: "successful" | OcspFailure;
  /**
   * Set when HTTP caches may keep the answer until nextUpdate (RFC 5019 §6.2); null for answers
   * bound to a nonce and for failures, which must never be cached.
   */
  freshness: { thisUpdate: Date; nextUpdate: Date; etag: string } | null;
}

const DEFAULT_UNKNOWN_VALIDITY_MS = 60_000;
const DEFAULT_MAX_ENTRIES = 20_000;
const DEFAULT_MAX_UNKNOWN_ENTRIES = 1_000;

interface Flight {
  /** Identifies this signing: a revocation replaces it, and the detached one then keeps nothing. */
  token: symbol;
  query: CertIdQuery;
  issuer: OcspIssuer;
  promise: Promise<PresignedResponse>;
}

/**
 * RFC 6960 responder for fleetca's issuers (DESIGN habit 8, after Boulder's ocsp/responder and
 * cfssl's ocsp/responder): single-CertID requests without a nonce — what TLS stapling and most
 * clients send — are answered from memory with pre-signed bytes; those responses are re-signed
 * before half their life by `refresh()` (the daemon's tick) and at once when a revocation comes
 * through the RevocationFeed, so a revoked certificate never keeps a "good" answer. Only a
 * request carrying a nonce (or several CertIDs) costs a signature on the request path.
 */
export class OcspResponder {
  readonly #issuers: OcspIssuer[];
  readonly #cache: OcspCache;
  /** One signing per CertID at a time; a revocation detaches a running one so its stale result is not kept. */
  readonly #inflight = new Map<string, Flight>();
  readonly #validityMs: number;
  readonly #unknownValidityMs: number;
  /** The running sweep, so a second tick does not start another and close() can wait for it. */
  #sweep: Promise<{ refreshed: number; dropped: number }> | null = null;
  #closed = false;

  constructor(
    issuers: Issuer[],
    private readonly certificates: Pick<CertificateLookup, "getCertificate">,
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
  }

  /** Answers one DER OCSPRequest. Never throws: a fault becomes internalError (RFC 6960 §4.2.1). */
  async respond(requestDer: Uint8Array): Promise<OcspAnswer> {
    const parsed = parseOcspRequest(requestDer);
    if (!parsed.ok) {
      this.log.debug({ reason: parsed.reason }, "malformed OCSP request");
      return failure("malformedRequest");
    }
    const { certIds, nonce } = parsed.query;
    const issuer = this.#issuerOf(certIds);
    if (!issuer) return failure("unauthorized");
    try {
      if (certIds.length === 1 && !nonce) return await this.#presigned(certIds[0]!, issuer);
      return await this.#signNow(certIds, issuer, nonce);
    } catch (err) {
      this.log.error({ err }, "OCSP response could not be produced");
      return failure("internalError");
    }
  }

  /**
   * RevocationFeed listener: drops every pre-signed answer for the revoked certificates (under
   * any CertID hash) and signs them again at once, before anyone asks.
   */
  onRevocations(events: RevocationEvent[]): void {
    if (this.#closed) return;
    for (const ev of events) {
      const issuer = this.#issuers.find((i) => i.keyIdHex === ev.issuerKeyId);
      if (!issuer) continue;
      const stale = new Map<string, { query: CertIdQuery; lastServedAt: number }>();
      for (const e of this.#cache.forSerial(ev.issuerKeyId, ev.serial)) stale.set(e.key, { query: e.query, lastServedAt: e.lastServedAt });
      for (const [key, f] of this.#inflight) {
        if (f.issuer === issuer && f.query.serial === ev.serial && !stale.has(key)) {
          stale.set(key, { query: f.query, lastServedAt: this.clock.now().getTime() });
        }
      }
      for (const [key, s] of stale) {
        this.#cache.delete(key);
        this.#inflight.delete(key);
        this.#presign(key, s.query, issuer, s.lastServedAt).catch((err) =>
          this.log.error({ err, serial: ev.serial }, "re-signing the OCSP response of a revoked certificate failed"),
        );
      }
      if (stale.size > 0) this.log.info({ serial: ev.serial, responses: stale.size }, "OCSP responses re-signed after revocation");
    }
  }

  /**
   * The sweep (daemon tick): re-signs every pre-signed answer past half its life that someone
   * asked for within the last validity period; lets the others go (they are signed again if
   * asked). "Unknown" answers are never refreshed, only dropped.
   */
  refresh(): Promise<{ refreshed: number; dropped: number }> {
    if (this.#closed) return Promise.resolve({ refreshed: 0, dropped: 0 });
    this.#sweep ??= this.#refreshAll().finally(() => (this.#sweep = null));
    return this.#sweep;
  }

  /** Stops refreshing (daemon close), after the signature in progress, so nothing reads a closed store. */
  async close(): Promise<void> {
    this.#closed = true;
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
        await this.#presign(e.key, e.query, e.issuer, e.lastServedAt);
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

  async #presigned(q: CertIdQuery, issuer: OcspIssuer): Promise<OcspAnswer> {
    const key = certIdKey(q);
    const now = this.clock.now();
    let e = this.#cache.get(key);
    if (!e || now >= e.refreshAt) {
      try {
        e = await this.#presign(key, q, issuer, now.getTime());
      } catch (err) {
        // A still-valid older answer beats an error while the signer is down.
        if (!e || now >= e.nextUpdate) throw err;
        this.log.error({ err, serial: q.serial }, "re-signing an OCSP response failed; serving the previous one");
      }
    }
    e.lastServedAt = now.getTime();
    return { der: e.der, outcome: "successful", freshness: { thisUpdate: e.thisUpdate, nextUpdate: e.nextUpdate, etag: e.etag } };
  }

  /** Reads the status now, signs it, and keeps it unless a revocation made it stale meanwhile. */
  #presign(key: string, query: CertIdQuery, issuer: OcspIssuer, lastServedAt: number): Promise<PresignedResponse> {
    const running = this.#inflight.get(key);
    if (running) return running.promise;
    const token = Symbol(key);
    const promise = (async () => {
      const now = this.clock.now();
      const answer = this.#statusOf(query, issuer);
      const w = this.#window(now, answer, issuer);
      const der = await signOcspResponse(issuer, [{ certId: query.certId, answer, ...w }], now, null);
      const entry: PresignedResponse = { key, query, issuer, status: answer.status, der, etag: etagOf(der), ...w, refreshAt: new Date((w.thisUpdate.getTime() + w.nextUpdate.getTime()) / 2), lastServedAt };
      if (this.#inflight.get(key)?.token === token) this.#cache.set(entry);
      return entry;
    })();
    this.#inflight.set(key, { token, query, issuer, promise });
    const settle = () => {
      if (this.#inflight.get(key)?.token === token) this.#inflight.delete(key);
    };
    promise.then(settle, settle);
    return promise;
  }

  /** Several CertIDs or a nonce: read and sign now, keep nothing (a nonce answer is for one client). */
  async #signNow(certIds: CertIdQuery[], issuer: OcspIssuer, nonce: Extension | null): Promise<OcspAnswer> {
    const now = this.clock.now();
    const answers = certIds.map((q) => {
      const answer = this.#statusOf(q, issuer);
      return { certId: q.certId, answer, ...this.#window(now, answer, issuer) };
    });
    const der = await signOcspResponse(issuer, answers, now, nonce);
    const nextUpdate = new Date(Math.min(...answers.map((a) => a.nextUpdate.getTime())));
    return { der, outcome: "successful", freshness: nonce ? null : { thisUpdate: answers[0]!.thisUpdate, nextUpdate, etag: etagOf(der) } };
  }

  /** RFC 6960 §2.2 from the inventory: good, revoked (time, reason), or unknown when not ours. */
  #statusOf(q: CertIdQuery, issuer: OcspIssuer): CertStatusAnswer {
    if (q.serial === null) return { status: "unknown" };
    const r = this.certificates.getCertificate(q.serial);
    // A serial of ours asked about under another of our issuers is not that issuer's certificate.
    if (!r || r.issuerKeyId !== issuer.keyIdHex) return { status: "unknown" };
    if (r.status === "valid") return { status: "good" };
    if (!r.revokedAt) throw new Error(`certificate ${r.serial} is revoked but has no revocation time`);
    return { status: "revoked", revokedAt: r.revokedAt, reason: r.revocationReason };
  }

  /** thisUpdate/nextUpdate: never past the issuer's own notAfter, whose signature would not verify then. */
  #window(now: Date, answer: CertStatusAnswer, issuer: OcspIssuer): { thisUpdate: Date; nextUpdate: Date } {
    const thisUpdate = wholeSeconds(now);
    const life = answer.status === "unknown" ? this.#unknownValidityMs : this.#validityMs;
    const end = Math.min(thisUpdate.getTime() + life, issuer.notAfter.getTime());
    return { thisUpdate, nextUpdate: wholeSeconds(new Date(Math.max(end, thisUpdate.getTime()))) };
  }
}

function failure(outcome: OcspFailure): OcspAnswer {
  return { der: ocspFailure(outcome), outcome, freshness: null };
}

/** A strong HTTP validator (RFC 9110 §8.8.3): the bytes' digest, so equal bytes have equal tags. */
function etagOf(der: Uint8Array): string {
  return `"${createHash("sha256").update(der).digest("base64url").slice(0, 27)}"`;
}
