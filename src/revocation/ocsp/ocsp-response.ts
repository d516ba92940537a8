import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { CRLReason, type Extension } from "@peculiar/asn1-x509";
import {
  CertStatus,
  KeyHash,
  OCSPResponse,
  OCSPResponseStatus,
  ResponderID,
  ResponseBytes,
  ResponseData,
  RevokedInfo,
  SingleResponse,
  id_pkix_ocsp_basic,
  type CertID,
} from "@peculiar/asn1-ocsp";
import { CRL_REASONS } from "../../core/revocation-reason.js";
import { signTbs } from "../../issuance/sign-tbs.js";
import type { OcspIssuer } from "./ocsp-issuer.js";

/** What fleetca knows about one certificate (RFC 6960 §2.2). */
export type CertStatusAnswer =
  | { status: "good" }
  | { status: "revoked"; revokedAt: Date; reason: number | null }
  | { status: "unknown" };

export interface SingleAnswer {
  certId: CertID;
  answer: CertStatusAnswer;
  thisUpdate: Date;
  nextUpdate: Date;
}

/** The unsigned failure statuses (RFC 6960 §4.2.1); they carry no responseBytes. */
export type OcspFailure = "malformedRequest" | "internalError" | "tryLater" | "unauthorized";

const FAILURES: Record<OcspFailure, Uint8Array> = {
  malformedRequest: encodeFailure(OCSPResponseStatus.malformedRequest),
  internalError: encodeFailure(OCSPResponseStatus.internalError),
  tryLater: encodeFailure(OCSPResponseStatus.tryLater),
  unauthorized: encodeFailure(OCSPResponseStatus.unauthorized),
};

/** OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } with no responseBytes (RFC 6960 §4.2.1). */
export function ocspFailure(status: OcspFailure): Uint8Array {
  return FAILURES[status];
}

function encodeFailure(status: OCSPResponseStatus): Uint8Array {
  return new Uint8Array(AsnConvert.serialize(new OCSPResponse({ responseStatus: status })));
}

/**
 * GeneralizedTime without fractional seconds: RFC 5280 §4.1.2.5.2 forbids them in certificates and
 * CRLs, and OCSP clients parse responses with the same code; the serializer would otherwise emit ".mmm".
 */
export function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

/**
 * Builds and signs a BasicOCSPResponse (RFC 6960 §4.2.1) with the issuer's own key, and wraps it
 * in a successful OCSPResponse. The ResponderID is byKey; `certs` is omitted because the CA signs
 * directly (§4.2.2.2), so the client already holds the certificate that verifies the signature.
 * The signed bytes are exactly the bytes shipped: the ResponseData is serialised once, signed,
 * and wrapped by hand (issuance/sign-tbs), then the signature is verified before it leaves.
 */
export async function signOcspResponse(
  issuer: OcspIssuer,
  answers: SingleAnswer[],
  producedAt: Date,
  nonce: Extension | null,
): Promise<Uint8Array> {
  const data = new ResponseData({
    responderID: new ResponderID({ byKey: new KeyHash(issuer.responderKeyHash) }),
    producedAt: wholeSeconds(producedAt),
    responses: answers.map(singleResponse),
    // RFC 6960 §4.4.1: the nonce comes back as a response extension, byte for byte as sent.
    ...(nonce && { responseExtensions: [nonce] }),
  });
  const tbsResponseData = new Uint8Array(AsnConvert.serialize(data));
  // BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature BIT STRING,
  // certs [0] OPTIONAL }: without certs, the same shape as a Certificate around its TBS.
  const basic = await signTbs(issuer.issuer.signer, tbsResponseData);
  const response = new OCSPResponse({
    responseStatus: OCSPResponseStatus.successful,
    responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(basic) }),
  });
  return new Uint8Array(AsnConvert.serialize(response));
}

function singleResponse(a: SingleAnswer): SingleResponse {
  return new SingleResponse({
    certID: a.certId,
    certStatus: certStatus(a.answer),
    thisUpdate: wholeSeconds(a.thisUpdate),
    nextUpdate: wholeSeconds(a.nextUpdate),
  });
}

function certStatus(a: CertStatusAnswer): CertStatus {
  switch (a.status) {
    case "good":
      return new CertStatus({ good: null });
    case "unknown":
      return new CertStatus({ unknown: null });
    case "revoked":
      return new CertStatus({
        revoked: new RevokedInfo({
          revocationTime: wholeSeconds(a.revokedAt),
          // RFC 5280 §5.3.1: the reason SHOULD be absent rather than "unspecified".
          ...(a.reason !== null && a.reason !== CRL_REASONS.unspecified && { revocationReason: new CRLReason(a.reason) }),
        }),
      });
  }
}
