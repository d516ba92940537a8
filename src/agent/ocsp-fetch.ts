import { createHash, verify, X509Certificate, type KeyObject } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier,
  AuthorityInfoAccessSyntax,
  Certificate,
  ExtendedKeyUsage,
  id_ce_extKeyUsage,
  id_kp_OCSPSigning,
  id_pe_authorityInfoAccess,
} from "@peculiar/asn1-x509";
import {
  BasicOCSPResponse,
  CertID,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  Request,
  ResponderID,
  TBSRequest,
  id_pkix_ocsp_basic,
} from "@peculiar/asn1-ocsp";
import { AgentError } from "./errors.js";
import { httpsRequest } from "./ca-client.js";
import { OCSP_DEFAULT_REFRESH_MS } from "./schedule.js";

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
 * How far in the future a response's thisUpdate may lie. The responder stamps thisUpdate with its
 * own clock and the agent judges it with the host's: a host a few seconds behind the CA would
 * otherwise refuse every fresh answer (RFC 6960 §4.2.2.1 only says a future thisUpdate SHOULD be
 * considered unreliable, leaving the margin to the client). Five minutes is the customary bound for
 * NTP-disciplined hosts: `openssl ocsp`'s default -validity_period (MAX_VALIDITY_PERIOD, 300 s), and
 * Kerberos' default clock skew.
 * nextUpdate gets no such margin: a staple past it would be refused by the TLS client, so
 * the agent must refuse it first.
 */
export const OCSP_CLOCK_SKEW_MS = 5 * 60_000;

/** Whose key must verify the response: the issuer's own, or its delegated responder's (RFC 6960 §4.2.2.2). */
interface Signer {
  key: KeyObject;
  /** "the issuer" or "delegated responder <subject>", for error messages. */
  what: string;
}

/**
 * SHA-1 of the subjectPublicKey BIT STRING value (excluding tag, length and unused-bits octet): the
 * ResponderID byKey (RFC 6960 §4.2.1, KeyHash).
 */
function keyHashOf(cert: Certificate): Buffer {
  return Buffer.from(sha1(cert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey));
}

/** Whether the ResponderID (byName or byKey, RFC 6960 §4.2.1) names this certificate's subject. */
function responderIdNames(id: ResponderID, cert: Certificate): boolean {
  if (id.byKey) return sameBytes(id.byKey.buffer, keyHashOf(cert));
  if (id.byName) return sameBytes(AsnConvert.serialize(id.byName), AsnConvert.serialize(cert.tbsCertificate.subject));
  return false;
}

function hasOcspSigningEku(cert: Certificate): boolean {
  const ext = cert.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_extKeyUsage);
  if (!ext) return false;
  try {
    return AsnConvert.parse(ext.extnValue.buffer, ExtendedKeyUsage).includes(id_kp_OCSPSigning);
  } catch {
    return false; // an unreadable extension grants nothing
  }
}

/**
 * Who may have signed this response (RFC 6960 §4.2.2.2): the CA that issued the certificate, or a
 * responder certificate that CA issued directly for the purpose. The ResponderID says which; a
 * response may carry several certificates (an intermediate, a responder cert), so the one the
 * ResponderID names is taken, never blindly the first.
 */
function authorisedSigner(basic: BasicOCSPResponse, issuerDer: Uint8Array, now: Date): Signer {
  const issuerModel = AsnConvert.parse(issuerDer, Certificate);
  const issuer = new X509Certificate(Buffer.from(issuerDer));
  const id = basic.tbsResponseData.responderID;
  if (responderIdNames(id, issuerModel)) return { key: issuer.publicKey, what: "the issuer" };

  const named = (basic.certs ?? []).find((c) => responderIdNames(id, c));
  if (!named) throw new AgentError("OCSP response's responder ID names neither the issuer nor any certificate the response carries");
  const d = new X509Certificate(Buffer.from(AsnConvert.serialize(named)));
  const subject = d.subject.replace(/\n/g, ", ");
  // §4.2.2.2 (1): "issued directly by the CA that is identified in the request": the issuer name
  // must be the CA's subject (checkIssued, which also matches key identifiers) and the CA's key must
  // verify the signature; a responder certified by any other CA speaks for nothing here.
  if (!d.checkIssued(issuer) || !d.verify(issuer.publicKey)) {
    throw new AgentError(`OCSP delegated responder ${subject} is not certified by the certificate's issuer`);
  }
  // §4.2.2.2: the CA marks the delegation by id-kp-OCSPSigning in extendedKeyUsage (RFC 5280
  // §4.2.1.12). Without it, any certificate the CA issued (a TLS leaf) could sign OCSP answers.
  if (!hasOcspSigningEku(named)) throw new AgentError(`OCSP delegated responder ${subject} lacks extendedKeyUsage id-kp-OCSPSigning`);
  // RFC 5280 §6.1.3 (a)(2): the responder certificate is only good inside its own validity.
  const v = named.tbsCertificate.validity;
  if (now.getTime() < v.notBefore.getTime().getTime() || now.getTime() > v.notAfter.getTime().getTime()) {
    throw new AgentError(`OCSP delegated responder ${subject} is outside its validity (${d.validFrom} – ${d.validTo})`);
  }
  return { key: d.publicKey, what: `delegated responder ${subject}` };
}

/**
 * Checks a response before it is stapled: successful, basic, about this very cert, signed by the
 * issuer or by a delegated responder the issuer certified for OCSP signing (RFC 6960 §4.2.2.2),
 * and current at `now` (§4.2.2.1 and §3.2 items 5–6). A stapled response a TLS client rejects
 * would be worse than none.
 *
 * `now` defaults to the wall clock only so the sidecar reload library (src/reload/credential-set.ts,
 * which has a `now` of its own) keeps compiling; the agent passes its injected clock.
 */
export function checkOcspResponse(der: Uint8Array, leafDer: Uint8Array, issuerDer: Uint8Array, now: Date = new Date()): OcspResult {
  let resp: OCSPResponse;
  let basic: BasicOCSPResponse;
  try {
    resp = AsnConvert.parse(der, OCSPResponse);
  } catch {
    throw new AgentError("OCSP responder's answer is not a DER OCSPResponse (RFC 6960 §4.2.1)");
  }
  if (resp.responseStatus !== OCSPResponseStatus.successful) throw new AgentError(`OCSP responder answered status ${resp.responseStatus}`);
  if (!resp.responseBytes || resp.responseBytes.responseType !== id_pkix_ocsp_basic) throw new AgentError("OCSP response is not a basic response");
  try {
    basic = AsnConvert.parse(resp.responseBytes.response.buffer, BasicOCSPResponse);
  } catch {
    throw new AgentError("OCSP response's BasicOCSPResponse is malformed (RFC 6960 §4.2.1)");
  }
  const want = certIdFor(leafDer, issuerDer);
  const single = basic.tbsResponseData.responses.find(
    (r) =>
      sameBytes(r.certID.serialNumber, want.serialNumber) &&
      sameBytes(r.certID.issuerKeyHash.buffer, want.issuerKeyHash.buffer) &&
      sameBytes(r.certID.issuerNameHash.buffer, want.issuerNameHash.buffer),
  );
  if (!single) throw new AgentError("OCSP response does not cover this certificate");

  const signer = authorisedSigner(basic, issuerDer, now);
  const hash = SIG_HASH[basic.signatureAlgorithm.algorithm];
  if (hash === undefined) throw new AgentError(`OCSP response signed with unsupported algorithm ${basic.signatureAlgorithm.algorithm}`);
  // The signature covers the ResponseData exactly as received (§4.2.1), hence the raw bytes.
  const tbs = basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData);
  let ok = false;
  try {
    ok = verify(hash, new Uint8Array(tbs), signer.key, new Uint8Array(basic.signature));
  } catch {
    ok = false; // a key of another type than the algorithm, or a malformed signature: not verified either way
  }
  if (!ok) throw new AgentError(`OCSP response signature does not verify with the key of ${signer.what}`);

  // Currency (RFC 6960 §4.2.2.1): a future thisUpdate (beyond the skew margin) or a past
  // nextUpdate makes the response unreliable.
  const t = now.getTime();
  const thisUpdate = single.thisUpdate;
  if (thisUpdate.getTime() > t + OCSP_CLOCK_SKEW_MS) {
    throw new AgentError(`OCSP response's thisUpdate ${thisUpdate.toISOString()} is in the future (now ${now.toISOString()})`);
  }
  if (single.nextUpdate) {
    if (t >= single.nextUpdate.getTime()) throw new AgentError(`OCSP response is stale: nextUpdate ${single.nextUpdate.toISOString()} has passed (now ${now.toISOString()})`);
  } else if (t - thisUpdate.getTime() > OCSP_DEFAULT_REFRESH_MS) {
    // No nextUpdate means "newer information is available all the time" (§4.2.2.1); such an
    // answer is only worth stapling while it is as recent as the agent would refresh it anyway.
    throw new AgentError(
      `OCSP response has no nextUpdate and its thisUpdate ${thisUpdate.toISOString()} is older than ${OCSP_DEFAULT_REFRESH_MS / 60_000} min (now ${now.toISOString()})`,
    );
  }

  const status = single.certStatus.good !== undefined ? "good" : single.certStatus.revoked ? "revoked" : "unknown";
  return { der: Buffer.from(der), thisUpdate, nextUpdate: single.nextUpdate, status };
}

/**
 * POSTs an OCSP request for one cert to its AIA OCSP URL (RFC 6960 Appendix A.1) and checks the
 * answer at `now`. The agent should pass its injected clock (`this.o.clock.now()`); the default is
 * the wall clock so callers written before the parameter existed keep compiling.
 */
export async function fetchOcsp(leafDer: Uint8Array, issuerDer: Uint8Array, now: Date = new Date(), timeoutMs = 10_000): Promise<OcspResult> {
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
  return checkOcspResponse(r.body, leafDer, issuerDer, now);
}
