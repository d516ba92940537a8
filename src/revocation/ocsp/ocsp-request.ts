import { isSerialHex, serialFromBytes, type SerialHex } from "../../core/serial.js";
import { DerError, DerReader, TAG, contextTag, readOid, readSmallUint, type Tlv } from "../../x509/der-reader.js";

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

/** id-pkix-ocsp-nonce (RFC 6960 §4.4.1). */
export const OCSP_NONCE_OID = "1.3.6.1.5.5.7.48.1.2";

/** One CertID of a request, decoded and ready to match against an issuer. */
export interface CertIdQuery {
  /**
   * The CertID's DER exactly as the client sent it: echoed unchanged in the SingleResponse (clients
   * match their request to the answer by it, RFC 6960 §4.2.2.3) and the pre-signed cache's key.
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
  /** The request's nonce Extension (its whole DER), echoed as is in responseExtensions (RFC 6960 §4.4.1). */
  nonce: Uint8Array | null;
}

export type ParsedOcspRequest = { ok: true; query: OcspQuery } | { ok: false; reason: string };

/**
 * Decodes an OCSPRequest (RFC 6960 §4.1.1) straight from its DER with a cursor, no object model:
 * this runs for every request that misses the exact-bytes map. Every failure is the client's
 * (malformedRequest, §4.2.1), described by `reason` for the debug log. An optional request
 * signature is skipped: status information is public, so fleetca does not require signed
 * requests (§4.1.2). The object-model decoder (ocsp-request-model.ts) is the tests' cross-check.
 *
 *   OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }
 *   TBSRequest  ::= SEQUENCE { version [0] EXPLICIT Version DEFAULT v1, requestorName [1] EXPLICIT GeneralName OPTIONAL,
 *                              requestList SEQUENCE OF Request, requestExtensions [2] EXPLICIT Extensions OPTIONAL }
 *   Request     ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
 */
export function parseOcspRequest(der: Uint8Array): ParsedOcspRequest {
  try {
    return { ok: true, query: decode(der) };
  } catch (e) {
    if (e instanceof DerError) return { ok: false, reason: e.message };
    throw e;
  }
}

function decode(der: Uint8Array): OcspQuery {
  if (der.length === 0) throw new DerError("empty request");
  const top = new DerReader(der);
  const reqTlv = top.expect(TAG.SEQUENCE, "OCSPRequest");
  top.finish("OCSPRequest");
  const req = top.inside(reqTlv);
  const tbsTlv = req.expect(TAG.SEQUENCE, "TBSRequest");
  req.optional(contextTag(0)); // optionalSignature: not checked (§4.1.2)
  req.finish("OCSPRequest");

  const tbs = req.inside(tbsTlv);
  const version = tbs.optional(contextTag(0));
  if (version) {
    const v = tbs.inside(version);
    const n = readSmallUint(v.content(v.expect(TAG.INTEGER, "version")));
    v.finish("version");
    if (n !== 0) throw new DerError(`unsupported request version ${n}`);
  }
  tbs.optional(contextTag(1)); // requestorName: informational only
  const list = tbs.inside(tbs.expect(TAG.SEQUENCE, "requestList"));
  const extsTlv = tbs.optional(contextTag(2));
  tbs.finish("TBSRequest");

  const certIds: CertIdQuery[] = [];
  while (!list.done) {
    if (certIds.length === MAX_CERT_IDS) throw new DerError(`more than ${MAX_CERT_IDS} CertIDs`);
    const r = list.inside(list.expect(TAG.SEQUENCE, "Request"));
    const certIdTlv = r.expect(TAG.SEQUENCE, "CertID");
    const singleExts = r.optional(contextTag(0));
    r.finish("Request");
    if (singleExts) {
      const critical = extensions(r, singleExts).find((e) => e.critical);
      if (critical) throw new DerError(`unsupported critical singleRequest extension ${critical.oid}`);
    }
    certIds.push(certId(r, certIdTlv));
  }
  if (certIds.length === 0) throw new DerError("empty requestList");

  let nonce: Uint8Array | null = null;
  for (const ext of extsTlv ? extensions(tbs, extsTlv) : []) {
    if (ext.oid === OCSP_NONCE_OID) {
      if (nonce) throw new DerError("more than one nonce extension");
      const length = nonceLength(ext.value);
      if (length < 1 || length > MAX_NONCE_OCTETS) throw new DerError(`nonce of ${length} octets (1..${MAX_NONCE_OCTETS} allowed)`);
      nonce = ext.der;
    } else if (ext.critical) {
      // RFC 6960 §4.4: unrecognised extensions are ignored unless critical (as RFC 5280 §4.2 says).
      throw new DerError(`unsupported critical request extension ${ext.oid}`);
    }
  }
  return { certIds, nonce };
}

/** CertID ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, issuerNameHash OCTET STRING, issuerKeyHash OCTET STRING, serialNumber INTEGER } */
function certId(parent: DerReader, t: Tlv): CertIdQuery {
  const c = parent.inside(t);
  const alg = c.inside(c.expect(TAG.SEQUENCE, "hashAlgorithm"));
  const oid = readOid(alg.content(alg.expect(TAG.OID, "hashAlgorithm OID")));
  // parameters: NULL or absent for every hash we know; anything else is left unchecked as before.
  const hash = CERT_ID_HASHES[oid as keyof typeof CERT_ID_HASHES];
  // With an unknown hash the CertID cannot be matched to an issuer, and only the issuer may sign
  // about its certificates (§4.2.2.2): there is no key to sign even "unknown" with.
  if (!hash) throw new DerError(`unsupported CertID hash algorithm ${oid}`);
  const issuerNameHash = c.content(c.expect(TAG.OCTET_STRING, "issuerNameHash"));
  const issuerKeyHash = c.content(c.expect(TAG.OCTET_STRING, "issuerKeyHash"));
  const serial = c.content(c.expect(TAG.INTEGER, "serialNumber"));
  c.finish("CertID");
  // Copies: the request buffer may be a pooled socket chunk, and entries outlive the request.
  return {
    der: Uint8Array.from(parent.whole(t)),
    hash,
    issuerNameHash: Uint8Array.from(issuerNameHash),
    issuerKeyHash: Uint8Array.from(issuerKeyHash),
    serial: serialOf(serial),
  };
}

interface ExtensionView {
  oid: string;
  critical: boolean;
  /** extnValue's content octets. */
  value: Uint8Array;
  /** The whole Extension TLV. */
  der: Uint8Array;
}

/** Extensions ::= SEQUENCE OF Extension, inside an EXPLICIT [n] (RFC 5280 §4.1). */
function extensions(parent: DerReader, explicit: Tlv): ExtensionView[] {
  const wrapper = parent.inside(explicit);
  const seq = wrapper.inside(wrapper.expect(TAG.SEQUENCE, "Extensions"));
  wrapper.finish("Extensions");
  const out: ExtensionView[] = [];
  while (!seq.done) {
    const t = seq.expect(TAG.SEQUENCE, "Extension");
    const e = seq.inside(t);
    const oid = readOid(e.content(e.expect(TAG.OID, "extnID")));
    const crit = e.optional(TAG.BOOLEAN);
    const critical = crit !== null && e.content(crit)[0] !== 0;
    const value = e.content(e.expect(TAG.OCTET_STRING, "extnValue"));
    e.finish("Extension");
    out.push({ oid, critical, value, der: Uint8Array.from(seq.whole(t)) });
  }
  return out;
}

/**
 * The nonce's length. RFC 9654 §2.1 (and RFC 6960 as clients implement it, e.g. OpenSSL) put the
 * nonce in an OCTET STRING inside extnValue; some older clients put the raw bytes there. Both are
 * measured by the value the client chose.
 */
function nonceLength(extnValue: Uint8Array): number {
  if (extnValue[0] === TAG.OCTET_STRING) {
    try {
      const r = new DerReader(extnValue);
      const t = r.next();
      if (r.done) return t.end - t.contentStart;
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

/** The pre-signed cache's key for a CertID: its exact DER (latin1, one char per octet). */
export function certIdKey(q: CertIdQuery): string {
  return Buffer.from(q.der.buffer, q.der.byteOffset, q.der.byteLength).toString("latin1");
}
