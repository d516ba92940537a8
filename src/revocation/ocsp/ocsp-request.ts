import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import type { Extension } from "@peculiar/asn1-x509";
import { CertID, OCSPRequest, id_pkix_ocsp_nonce } from "@peculiar/asn1-ocsp";
import { isSerialHex, serialFromBytes, type SerialHex } from "../../core/serial.js";
import { derOuterLength } from "../../x509/der.js";

/**
 * CertID hash algorithms we can match (RFC 6960 §4.1.1 names SHA-1; RFC 5754 §2 the SHA-2 OIDs).
 * Anything else cannot be attributed to any issuer, so nothing can sign an answer for it.
 */
export const CERT_ID_HASHES = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
} as const;
export type CertIdHash = (typeof CERT_ID_HASHES)[keyof typeof CERT_ID_HASHES];

/** More CertIDs than this in one request is refused: each one costs a lookup, and the answer is signed at once. */
export const MAX_CERT_IDS = 50;
/**
 * RFC 9654 §2.1 (which obsoletes RFC 8954 and its 32-octet cap): nonces up to 128 octets are
 * valid; a longer (or empty) one is refused with malformedRequest. Every valid nonce is echoed.
 */
export const MAX_NONCE_OCTETS = 128;

/** One CertID of a request, decoded and ready to match against an issuer. */
export interface CertIdQuery {
  certId: CertID;
  /**
   * The CertID re-encoded as DER: echoed unchanged in the SingleResponse (clients match their
   * request to the answer by it, RFC 6960 §4.2.2.3) and the pre-signed cache's key.
   */
  der: Uint8Array;
  hash: CertIdHash;
  issuerNameHash: Uint8Array;
  issuerKeyHash: Uint8Array;
  /** Null when the serial cannot be one of ours (zero, negative or over 20 octets): the answer is unknown. */
  serial: SerialHex | null;
}

export interface OcspQuery {
  certIds: CertIdQuery[];
  /** The request's nonce extension, echoed as is in responseExtensions (RFC 6960 §4.4.1). */
  nonce: Extension | null;
}

export type ParsedOcspRequest = { ok: true; query: OcspQuery } | { ok: false; reason: string };

/**
 * Decodes an OCSPRequest (RFC 6960 §4.1.1). Every failure is the client's (malformedRequest,
 * §4.2.1), described by `reason` for the debug log. An optional request signature is ignored:
 * status information is public, so fleetca does not require signed requests (§4.1.2).
 */
export function parseOcspRequest(der: Uint8Array): ParsedOcspRequest {
  if (der.length === 0 || derOuterLength(der) !== der.length) return { ok: false, reason: "not a single DER value" };
  let req: OCSPRequest;
  try {
    req = AsnConvert.parse(der, OCSPRequest);
  } catch {
    return { ok: false, reason: "not an OCSPRequest" };
  }
  const tbs = req.tbsRequest;
  if (tbs.version !== 0) return { ok: false, reason: `unsupported request version ${tbs.version}` };
  if (tbs.requestList.length === 0) return { ok: false, reason: "empty requestList" };
  if (tbs.requestList.length > MAX_CERT_IDS) return { ok: false, reason: `more than ${MAX_CERT_IDS} CertIDs` };

  let nonce: Extension | null = null;
  for (const ext of tbs.requestExtensions ?? []) {
    if (ext.extnID === id_pkix_ocsp_nonce) {
      if (nonce) return { ok: false, reason: "more than one nonce extension" };
      const length = nonceLength(new Uint8Array(ext.extnValue.buffer));
      if (length < 1 || length > MAX_NONCE_OCTETS) return { ok: false, reason: `nonce of ${length} octets (1..${MAX_NONCE_OCTETS} allowed)` };
      nonce = ext;
    } else if (ext.critical) {
      // RFC 6960 §4.4: unrecognised extensions are ignored unless critical (as RFC 5280 §4.2 says).
      return { ok: false, reason: `unsupported critical request extension ${ext.extnID}` };
    }
  }

  const certIds: CertIdQuery[] = [];
  for (const r of tbs.requestList) {
    const critical = (r.singleRequestExtensions ?? []).find((e) => e.critical);
    if (critical) return { ok: false, reason: `unsupported critical singleRequest extension ${critical.extnID}` };
    const id = r.reqCert;
    const hash = CERT_ID_HASHES[id.hashAlgorithm.algorithm as keyof typeof CERT_ID_HASHES];
    // With an unknown hash the CertID cannot be matched to an issuer, and only the issuer may sign
    // about its certificates (§4.2.2.2): there is no key to sign even "unknown" with.
    if (!hash) return { ok: false, reason: `unsupported CertID hash algorithm ${id.hashAlgorithm.algorithm}` };
    certIds.push({
      certId: id,
      der: new Uint8Array(AsnConvert.serialize(id)),
      hash,
      issuerNameHash: new Uint8Array(id.issuerNameHash.buffer),
      issuerKeyHash: new Uint8Array(id.issuerKeyHash.buffer),
      serial: serialOf(new Uint8Array(id.serialNumber)),
    });
  }
  return { ok: true, query: { certIds, nonce } };
}

/**
 * The nonce's length. RFC 9654 §2.1 (and RFC 6960 as clients implement it, e.g. OpenSSL) put the
 * nonce in an OCTET STRING inside extnValue; some older clients put the raw bytes there. Both are
 * measured by the value the client chose.
 */
function nonceLength(extnValue: Uint8Array): number {
  if (extnValue[0] === 0x04 && derOuterLength(extnValue) === extnValue.length) {
    try {
      return AsnConvert.parse(extnValue, OctetString).byteLength;
    } catch {
      // not an OCTET STRING after all: the raw form
    }
  }
  return extnValue.length;
}

/**
 * CertificateSerialNumber content octets → the inventory's key (core/serial: lower-case hex of the
 * magnitude, as x509/certificate-info derives it). RFC 5280 §4.1.2.2: positive, at most 20 octets.
 */
function serialOf(content: Uint8Array): SerialHex | null {
  if (content.length === 0 || (content[0]! & 0x80) !== 0) return null;
  const magnitude = content.length > 1 && content[0] === 0 ? content.subarray(1) : content;
  const hex = serialFromBytes(magnitude);
  return isSerialHex(hex) && /[1-9a-f]/.test(hex) ? hex : null;
}

export function certIdKey(q: CertIdQuery): string {
  return Buffer.from(q.der).toString("base64");
}
