import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { CRLReason, Extension } from "@peculiar/asn1-x509";
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
  CertID,
} from "@peculiar/asn1-ocsp";
import { CRL_REASONS } from "../../core/revocation-reason.js";
import { signTbs } from "../../issuance/sign-tbs.js";
import type { OcspIssuer } from "./ocsp-issuer.js";
import { wholeSeconds, type CertStatusAnswer, type SingleAnswer } from "./ocsp-response.js";

/**
 * The object-model encoder (@peculiar/asn1-ocsp) that fleetca used before the DER-direct one in
 * ocsp-response.ts; kept as the tests' cross-check of it (same ResponseData bytes, same parse),
 * not on the request path.
 */

/**
 * Builds and signs a BasicOCSPResponse (RFC 6960 §4.2.1) with the issuer's own key, and wraps it
 * in a successful OCSPResponse. The ResponderID is byKey; `certs` is omitted because the CA signs
 * directly (§4.2.2.2), so the client already holds the certificate that verifies the signature.
 * The signed bytes are exactly the bytes shipped: the ResponseData is serialised once, signed,
 * and wrapped by hand (issuance/sign-tbs), then the signature is verified before it leaves.
 */
export async function signOcspResponseWithObjectModel(
  issuer: OcspIssuer,
  answers: SingleAnswer[],
  producedAt: Date,
  nonce: Uint8Array | null,
): Promise<Uint8Array> {
  const tbsResponseData = responseDataWithObjectModel(issuer, answers, producedAt, nonce);
  // BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature BIT STRING,
  // certs [0] OPTIONAL }: without certs, the same shape as a Certificate around its TBS.
  const basic = await signTbs(issuer.issuer.signer, tbsResponseData);
  const response = new OCSPResponse({
    responseStatus: OCSPResponseStatus.successful,
    responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(basic) }),
  });
  return new Uint8Array(AsnConvert.serialize(response));
}

/** The ResponseData bytes the object model writes for these answers. */
export function responseDataWithObjectModel(issuer: OcspIssuer, answers: SingleAnswer[], producedAt: Date, nonce: Uint8Array | null): Uint8Array {
  const data = new ResponseData({
    responderID: new ResponderID({ byKey: new KeyHash(issuer.responderKeyHash) }),
    producedAt: wholeSeconds(producedAt),
    responses: answers.map(singleResponse),
    // RFC 6960 §4.4.1: the nonce comes back as a response extension, byte for byte as sent.
    ...(nonce && { responseExtensions: [AsnConvert.parse(nonce, Extension)] }),
  });
  return new Uint8Array(AsnConvert.serialize(data));
}

function singleResponse(a: SingleAnswer): SingleResponse {
  return new SingleResponse({
    certID: AsnConvert.parse(a.certIdDer, CertID),
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
