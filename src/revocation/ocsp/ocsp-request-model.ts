import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { OCSPRequest, id_pkix_ocsp_nonce } from "@peculiar/asn1-ocsp";
import { isSerialHex, serialFromBytes, type SerialHex } from "../../core/serial.js";
import { derOuterLength } from "../../x509/der.js";
import { CERT_ID_HASHES, MAX_CERT_IDS, MAX_NONCE_OCTETS, type CertIdQuery, type ParsedOcspRequest } from "./ocsp-request.js";


/**
 * The object-model decoder (asn1js through @peculiar/asn1-ocsp) that fleetca used before the
 * DER-direct one in ocsp-request.ts; kept as the tests' cross-check of it, not on the request path.
 * Decodes an OCSPRequest (RFC 6960 §4.1.1). Every failure is the client's (malformedRequest,
 * §4.2.1), described by `reason` for the debug log. An optional request signature is ignored:
 * status information is public, so fleetca does not require signed requests (§4.1.2).
 */
export function parseOcspRequestWithObjectModel(der: Uint8Array): ParsedOcspRequest {
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

  let nonce: Uint8Array | null = null;
  for (const ext of tbs.requestExtensions ?? []) {
    if (ext.extnID === id_pkix_ocsp_nonce) {
      if (nonce) return { ok: false, reason: "more than one nonce extension" };
      const length = nonceLength(new Uint8Array(ext.extnValue.buffer));
      if (length < 1 || length > MAX_NONCE_OCTETS) return { ok: false, reason: `nonce of ${length} octets (1..${MAX_NONCE_OCTETS} allowed)` };
      nonce = new Uint8Array(AsnConvert.serialize(ext));
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
