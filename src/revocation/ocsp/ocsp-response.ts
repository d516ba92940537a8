import { CRL_REASONS } from "../../core/revocation-reason.js";
import { derOid, derSequence, derTlv } from "../../x509/der.js";
import type { OcspIssuer } from "./ocsp-issuer.js";

/** What fleetca knows about one certificate (RFC 6960 §2.2). */
export type CertStatusAnswer =
  | { status: "good" }
  | { status: "revoked"; revokedAt: Date; reason: number | null }
  | { status: "unknown" };

export interface SingleAnswer {
  /** The CertID's DER, echoed as the client sent it (RFC 6960 §4.2.2.3). */
  certIdDer: Uint8Array;
  answer: CertStatusAnswer;
  thisUpdate: Date;
  nextUpdate: Date;
}

/** The unsigned failure statuses (RFC 6960 §4.2.1); they carry no responseBytes. */
export type OcspFailure = "malformedRequest" | "internalError" | "tryLater" | "unauthorized";

/** OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } with no responseBytes (RFC 6960 §4.2.1). */
const FAILURES: Record<OcspFailure, Uint8Array> = {
  malformedRequest: Uint8Array.of(0x30, 0x03, 0x0a, 0x01, 0x01),
  internalError: Uint8Array.of(0x30, 0x03, 0x0a, 0x01, 0x02),
  tryLater: Uint8Array.of(0x30, 0x03, 0x0a, 0x01, 0x03),
  unauthorized: Uint8Array.of(0x30, 0x03, 0x0a, 0x01, 0x06),
};

export function ocspFailure(status: OcspFailure): Uint8Array {
  return FAILURES[status];
}

/**
 * GeneralizedTime without fractional seconds: RFC 5280 §4.1.2.5.2 forbids them in certificates and
 * CRLs, and OCSP clients parse responses with the same code.
 */
export function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

/** responseStatus successful (0), then [0] EXPLICIT ResponseBytes { id-pkix-ocsp-basic, OCTET STRING } (§4.2.1). */
const SUCCESSFUL = Uint8Array.of(0x0a, 0x01, 0x00);
const ID_PKIX_OCSP_BASIC = derOid("1.3.6.1.5.5.7.48.1.1");
const GOOD = Uint8Array.of(0x80, 0x00); // [0] IMPLICIT NULL
const UNKNOWN = Uint8Array.of(0x82, 0x00); // [2] IMPLICIT UnknownInfo (NULL)

/**
 * ResponseData (RFC 6960 §4.2.1) as DER, written directly (no object model: this runs for every
 * signature, pre-signing included):
 *
 *   ResponseData ::= SEQUENCE { version [0] EXPLICIT DEFAULT v1 (omitted, X.690 §11.5),
 *     responderID byKey [2] EXPLICIT KeyHash, producedAt GeneralizedTime,
 *     responses SEQUENCE OF SingleResponse, responseExtensions [1] EXPLICIT Extensions OPTIONAL }
 *
 * The nonce extension, when given, is echoed byte for byte as the client sent it (§4.4.1).
 * The object-model encoder in ocsp-response-model.ts produces the same bytes (the tests check).
 */
export function encodeResponseData(responderKeyHash: Uint8Array, answers: SingleAnswer[], producedAt: Date, nonce: Uint8Array | null): Uint8Array {
  const parts = [
    derTlv(0xa2, derTlv(0x04, responderKeyHash)),
    generalizedTime(producedAt),
    derSequence(...answers.map(singleResponse)),
  ];
  if (nonce) parts.push(derTlv(0xa1, derSequence(nonce)));
  return derSequence(...parts);
}

/**
 * Builds and signs a BasicOCSPResponse (RFC 6960 §4.2.1) with the issuer's own key, and wraps it
 * in a successful OCSPResponse. The ResponderID is byKey; `certs` is omitted because the CA signs
 * directly (§4.2.2.2), so the client already holds the certificate that verifies the signature.
 * The signed bytes are exactly the bytes shipped.
 */
export async function signOcspResponse(
  issuer: OcspIssuer,
  answers: SingleAnswer[],
  producedAt: Date,
  nonce: Uint8Array | null = null,
  onThisThread = false,
): Promise<Uint8Array> {
  const tbs = encodeResponseData(issuer.responderKeyHash, answers, wholeSeconds(producedAt), nonce);
  return wrapBasic(await issuer.signBasic(tbs, onThisThread));
}

/** OCSPResponse around a signed BasicOCSPResponse. */
export function wrapBasic(basic: Uint8Array): Uint8Array {
  return derSequence(SUCCESSFUL, derTlv(0xa0, derSequence(ID_PKIX_OCSP_BASIC, derTlv(0x04, basic))));
}

/** SingleResponse ::= SEQUENCE { certID, certStatus, thisUpdate, nextUpdate [0] EXPLICIT GeneralizedTime } */
function singleResponse(a: SingleAnswer): Uint8Array {
  return derSequence(a.certIdDer, certStatus(a.answer), generalizedTime(a.thisUpdate), derTlv(0xa0, generalizedTime(a.nextUpdate)));
}

function certStatus(a: CertStatusAnswer): Uint8Array {
  switch (a.status) {
    case "good":
      return GOOD;
    case "unknown":
      return UNKNOWN;
    case "revoked": {
      // revoked [1] IMPLICIT RevokedInfo { revocationTime, revocationReason [0] EXPLICIT CRLReason OPTIONAL }.
      // RFC 5280 §5.3.1: the reason SHOULD be absent rather than "unspecified".
      const reason = a.reason !== null && a.reason !== CRL_REASONS.unspecified ? [derTlv(0xa0, Uint8Array.of(0x0a, 0x01, a.reason))] : [];
      return derTlv(0xa1, Buffer.concat([generalizedTime(a.revokedAt), ...reason]));
    }
  }
}

/**
 * GeneralizedTime YYYYMMDDHHMMSSZ: OCSP uses it for every time whatever the year (RFC 6960 §4.2.1
 * ASN.1), unlike certificates' UTCTime before 2050; whole seconds (wholeSeconds above).
 */
function generalizedTime(d: Date): Uint8Array {
  const iso = new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  const out = new Uint8Array(17);
  out[0] = 0x18;
  out[1] = 15;
  const digits = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + "Z";
  for (let i = 0; i < 15; i++) out[2 + i] = digits.charCodeAt(i);
  return out;
}
