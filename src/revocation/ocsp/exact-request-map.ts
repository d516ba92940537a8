import type { PresignedResponse } from "./ocsp-cache.js";

/**
 * The exact bytes of a request (POST body, or decoded GET) → the pre-signed answer it got: a
 * repeated request, which is what stapling servers and caching clients send, is answered without
 * parsing. It is an index into the pre-signed cache, never a second copy: an entry is used only
 * while its answer is the cache's current one (a revocation or a refresh replaces that, which
 * retires the entry) and before its refresh time. Bounded; the oldest entry goes first.
 */
/**
 * Requests longer than this are not remembered: a single-CertID request is 70-130 octets, and a
 * client must not be able to fill the map with 64 KiB keys (junk requestorName, unknown extensions).
 */
export const MAX_REMEMBERED_REQUEST_CHARS = 1024;

export class ExactRequestMap {
  readonly #map = new Map<string, PresignedResponse>();

  constructor(private readonly max: number) {
    if (!(max > 0)) throw new Error("exact-request map bound must be positive");
  }

  get size(): number {
    return this.#map.size;
  }

  /** The live answer for these request bytes, or undefined (and the dead entry dropped). */
  get(requestKey: string, nowMs: number): PresignedResponse | undefined {
    const e = this.#map.get(requestKey);
    if (!e) return undefined;
    if (e.retired || nowMs >= e.refreshAt.getTime()) {
      this.#map.delete(requestKey);
      return undefined;
    }
    return e;
  }

  remember(requestKey: string, e: PresignedResponse): void {
    if (requestKey.length > MAX_REMEMBERED_REQUEST_CHARS) return;
    if (this.#map.size >= this.max && !this.#map.has(requestKey)) this.#map.delete(this.#map.keys().next().value!);
    this.#map.set(requestKey, e);
  }

  clear(): void {
    this.#map.clear();
  }
}

/** The map's key for request bytes: one char per octet, cheap to make and to hash. */
export function requestKey(der: Uint8Array): string {
  return Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("latin1");
}

/**
 * The map's key for a GET path segment as the client spelt it (RFC 6960 A.1): a repeated GET is
 * answered without even decoding its base64. Cannot collide with requestKey: DER starts with 0x30,
 * this with "/".
 */
export function getPathKey(segment: string): string {
  return `/${segment}`;
}
