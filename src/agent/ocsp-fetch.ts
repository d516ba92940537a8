import { createHash, verify, X509Certificate } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, AuthorityInfoAccessSyntax, Certificate, id_pe_authorityInfoAccess } from "@peculiar/asn1-x509";
import { BasicOCSPResponse, CertID, OCSPRequest, OCSPResponse, OCSPResponseStatus, Request, TBSRequest, id_pkix_ocsp_basic } from "@peculiar/asn1-ocsp";
import { AgentError } from "./errors.js";
import { httpsRequest } from "./ca-client.js";

/** id-ad-ocsp (RFC 5280 §4.2.2.1). */
const ID_AD_OCSP = "1.3.6.1.5.5.7.48.1";
/** SHA-1 for CertID: what RFC 5019 §2.1.1 (lightweight OCSP profile) requires responders to accept. */
const SHA1 = "1.3.14.3.2.26";

const SIG_HASH: Record<string, string | null> = {
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.3.101.112": null,
};

/** The OCSP responder URL from the cert's Authority Information Access extension, if any. */
export function ocspUrlOf(certDer: Uint8Array): string | null {
  const cert = AsnConvert.parse(certDer, Certificate);
  const ext = cert.tbsCertificate.extensions?.find((e) => e.extnID === id_pe_authorityInfoAccess);
  if (!ext) return null;
  const aia = AsnConvert.parse(ext.extnValue.buffer, AuthorityInfoAccessSyntax);
  const ad = aia.find((a) => a.accessMethod === ID_AD_OCSP && a.accessLocation.uniformResourceIdentifier);
  return ad?.accessLocation.uniformResourceIdentifier ?? null;
}

function sha1(data: ArrayBuffer | Uint8Array): ArrayBuffer {
  return new Uint8Array(createHash("sha1").update(new Uint8Array(data)).digest()).buffer;
}

/** CertID for `leaf` under `issuer` (RFC 6960 §4.1.1): hashes of the issuer's name and key. */
export function certIdFor(leafDer: Uint8Array, issuerDer: Uint8Array): CertID {
  const leaf = AsnConvert.parse(leafDer, Certificate);
  const issuer = AsnConvert.parse(issuerDer, Certificate);
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA1, parameters: null }),
    issuerNameHash: new OctetString(sha1(AsnConvert.serialize(issuer.tbsCertificate.subject))),
    // The hash of the subjectPublicKey BIT STRING's value, excluding tag, length and unused-bits octet.
    issuerKeyHash: new OctetString(sha1(issuer.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey)),
    serialNumber: leaf.tbsCertificate.serialNumber,
  });
}

export interface OcspResult {
  der: Buffer;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  status: "good" | "revoked" | "unknown";
}

function sameBytes(a: ArrayBuffer | Uint8Array, b: ArrayBuffer | Uint8Array): boolean {
  return Buffer.from(new Uint8Array(a)).equals(Buffer.from(new Uint8Array(b)));
}

/**
 * Checks a response before it is stapled: successful, basic, about this very cert, and signed by
 * the issuer or by a delegated responder the issuer certified (RFC 6960 §4.2.2.2). A stapled
 * response a TLS client rejects would be worse than none.
 */
export function checkOcspResponse(der: Uint8Array, leafDer: Uint8Array, issuerDer: Uint8Array): OcspResult {
  const resp = AsnConvert.parse(der, OCSPResponse);
  if (resp.responseStatus !== OCSPResponseStatus.successful) throw new AgentError(`OCSP responder answered status ${resp.responseStatus}`);
  if (!resp.responseBytes || resp.responseBytes.responseType !== id_pkix_ocsp_basic) throw new AgentError("OCSP response is not a basic response");
  const basic = AsnConvert.parse(resp.responseBytes.response.buffer, BasicOCSPResponse);
  const want = certIdFor(leafDer, issuerDer);
  const single = basic.tbsResponseData.responses.find(
    (r) =>
      sameBytes(r.certID.serialNumber, want.serialNumber) &&
      sameBytes(r.certID.issuerKeyHash.buffer, want.issuerKeyHash.buffer) &&
      sameBytes(r.certID.issuerNameHash.buffer, want.issuerNameHash.buffer),
  );
  if (!single) throw new AgentError("OCSP response does not cover this certificate");

  const issuer = new X509Certificate(Buffer.from(issuerDer));
  let signerKey = issuer.publicKey;
  const delegated = basic.certs?.[0];
  if (delegated) {
    const d = new X509Certificate(Buffer.from(AsnConvert.serialize(delegated)));
    if (!d.verify(issuer.publicKey)) throw new AgentError("OCSP responder certificate is not signed by the issuer");
    signerKey = d.publicKey;
  }
  const hash = SIG_HASH[basic.signatureAlgorithm.algorithm];
  if (hash === undefined) throw new AgentError(`OCSP response signed with unsupported algorithm ${basic.signatureAlgorithm.algorithm}`);
  const tbs = basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData);
  if (!verify(hash, new Uint8Array(tbs), signerKey, new Uint8Array(basic.signature))) throw new AgentError("OCSP response signature does not verify");

  const status = single.certStatus.good !== undefined ? "good" : single.certStatus.revoked ? "revoked" : "unknown";
  return { der: Buffer.from(der), thisUpdate: single.thisUpdate, nextUpdate: single.nextUpdate, status };
}

/** POSTs an OCSP request for one cert to its AIA OCSP URL (RFC 6960 Appendix A.1). */
export async function fetchOcsp(leafDer: Uint8Array, issuerDer: Uint8Array, timeoutMs = 10_000): Promise<OcspResult> {
  const url = ocspUrlOf(leafDer);
  if (!url) throw new AgentError("certificate has no OCSP URL in its Authority Information Access");
  const req = new OCSPRequest({ tbsRequest: new TBSRequest({ requestList: [new Request({ reqCert: certIdFor(leafDer, issuerDer) })] }) });
  const r = await httpsRequest(url, {
    method: "POST",
    headers: { "content-type": "application/ocsp-request", accept: "application/ocsp-response" },
    body: new Uint8Array(AsnConvert.serialize(req)),
    timeoutMs,
  });
  if (r.status !== 200) throw new AgentError(`OCSP responder ${url} answered HTTP ${r.status}`);
  return checkOcspResponse(r.body, leafDer, issuerDer);
}
