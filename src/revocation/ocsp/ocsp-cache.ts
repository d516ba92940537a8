import type { SerialHex } from "../../core/serial.js";
import type { OcspIssuer } from "./ocsp-issuer.js";
import type { CertIdQuery } from "./ocsp-request.js";
import type { CertStatusAnswer } from "./ocsp-response.js";

/** A signed single-CertID OCSPResponse kept in memory, with what is needed to re-sign it. */
export interface PresignedResponse {
  /** The CertID's DER (latin1): two requests for the same CertID get the same bytes. */
  key: string;
  query: CertIdQuery;
  issuer: OcspIssuer;
  status: CertStatusAnswer["status"];
  /** The status the answer says, with the revocation's time and reason: what a nonce answer for this CertID says too. */
  answer: CertStatusAnswer;
  der: Uint8Array;
  /** Strong validator for RFC 5019 §6.2 conditional GETs: a digest of `der`. */
  etag: string;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Half-way between thisUpdate and nextUpdate: after this the response is signed again (DESIGN habit 8). */
  refreshAt: Date;
  /** ms since the epoch (the injected clock's): responses nobody asks for are let go instead of refreshed. */
  lastServedAt: number;
  /** Set when the cache lets the entry go (replaced, evicted, revoked): exact-request entries pointing at it die with it. */
  retired?: boolean;
}

/**
 * The pre-signed responses, bounded so that requests cannot grow it without limit: two LRUs, one
 * for certificates we know (good, revoked) and a small one for "unknown" answers, so a flood of
 * made-up serials evicts only other made-up serials. Indexed by (issuer, serial) so a revocation
 * finds every CertID encoding (SHA-1, SHA-256, …) that names the certificate.
 */
export class OcspCache {
  // Map keeps insertion order: re-inserting on use makes the first key the least recently used.
  readonly #known = new Map<string, PresignedResponse>();
  readonly #unknown = new Map<string, PresignedResponse>();
  readonly #bySerial = new Map<string, Set<string>>();

  constructor(
    private readonly maxKnown: number,
    private readonly maxUnknown: number,
  ) {
    if (!(maxKnown > 0 && maxUnknown > 0)) throw new Error("OCSP cache bounds must be positive");
  }

  get size(): number {
    return this.#known.size + this.#unknown.size;
  }

  /** The entry for a CertID, marked most recently used. */
  get(key: string): PresignedResponse | undefined {
    for (const map of [this.#known, this.#unknown]) {
      const e = map.get(key);
      if (e) {
        map.delete(key);
        map.set(key, e);
        return e;
      }
    }
    return undefined;
  }

  /** The entry for a CertID, without counting as a use. */
  peek(key: string): PresignedResponse | undefined {
    return this.#known.get(key) ?? this.#unknown.get(key);
  }

  set(e: PresignedResponse): void {
    this.delete(e.key);
    const [map, max] = e.status === "unknown" ? [this.#unknown, this.maxUnknown] : [this.#known, this.maxKnown];
    map.set(e.key, e);
    const s = serialKey(e.issuer.keyIdHex, e.query.serial);
    if (s) {
      const keys = this.#bySerial.get(s) ?? new Set<string>();
      keys.add(e.key);
      this.#bySerial.set(s, keys);
    }
    while (map.size > max) this.delete(map.keys().next().value!);
  }

  delete(key: string): void {
    const e = this.#known.get(key) ?? this.#unknown.get(key);
    if (!e) return;
    e.retired = true;
    this.#known.delete(key);
    this.#unknown.delete(key);
    const s = serialKey(e.issuer.keyIdHex, e.query.serial);
    const keys = s ? this.#bySerial.get(s) : undefined;
    keys?.delete(key);
    if (s && keys?.size === 0) this.#bySerial.delete(s);
  }

  /** Every cached entry naming this certificate, whatever hash its CertID used. */
  forSerial(issuerKeyId: string, serial: SerialHex): PresignedResponse[] {
    const keys = this.#bySerial.get(serialKey(issuerKeyId, serial)!) ?? new Set<string>();
    return [...keys].map((k) => this.#known.get(k) ?? this.#unknown.get(k)).filter((e): e is PresignedResponse => !!e);
  }

  /** A snapshot, so the caller may change the cache while it walks. */
  entries(): PresignedResponse[] {
    return [...this.#known.values(), ...this.#unknown.values()];
  }
}

function serialKey(issuerKeyId: string, serial: SerialHex | null): string | null {
  return serial === null ? null : `${issuerKeyId}:${serial}`;
}
