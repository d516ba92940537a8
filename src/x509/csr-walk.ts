import type { CsrFields, SanGroup } from "./csr-fields.js";
import { DerError, DerReader, TAG, contextTag, type Tlv } from "./der-reader.js";
import { OID } from "./oids.js";
import { Unusual, strictBoolean, strictOid, walkGeneralNames, walkName, walkSpkiShape } from "./ordinary-der.js";

/**
 * A PKCS#10 request read by walking its DER once (RFC 2986 §4.1, X.690 §10), without the ASN.1
 * object model: a handful of TLV headers and views into the request's own bytes, where the object
 * model builds and re-serialises a tree of objects (12 % of the sign path's main thread).
 *
 * The walk only says yes to the shape every ordinary request has (what openssl, Go, node and the
 * cert-agent produce): DER, version 0, a subject of UTF8/Printable/IA5 ASCII strings, an SPKI
 * whose algorithm parameters are absent, NULL or a curve OID, an extensionRequest as the only
 * attribute, SANs of DNS/IP/URI. For anything else, malformed or merely unusual, it answers null
 * and the caller decodes with the object model (csr-object-model.ts), which decides — and words —
 * the outcome exactly as before. So the walk never refuses a request itself, and may be strict.
 */
export function walkCsr(der: Uint8Array): CsrFields | null {
  try {
    return walk(der);
  } catch (e) {
    if (e instanceof DerError) return null;
    throw e;
  }
}

function walk(der: Uint8Array): CsrFields | null {
  const top = new DerReader(der);
  // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
  const reqTlv = top.expect(TAG.SEQUENCE, "CertificationRequest");
  top.finish("CSR");
  const req = top.inside(reqTlv);
  const infoTlv = req.expect(TAG.SEQUENCE, "certificationRequestInfo");
  const signatureAlgorithm = algorithmWithoutParameters(req, req.expect(TAG.SEQUENCE, "signatureAlgorithm"));
  const sigTlv = req.expect(TAG.BIT_STRING, "signature");
  req.finish("CertificationRequest");
  const sigContent = req.content(sigTlv);
  // X.690 §8.6.2: the first octet counts unused bits; a signature is whole octets.
  if (sigContent.length < 1 || sigContent[0] !== 0) throw new Unusual("signature has unused bits");

  // CertificationRequestInfo ::= SEQUENCE { version INTEGER { v1(0) }, subject Name,
  //   subjectPKInfo SubjectPublicKeyInfo, attributes [0] IMPLICIT SET OF Attribute }
  const info = req.inside(infoTlv);
  const version = info.content(info.expect(TAG.INTEGER, "version"));
  if (version.length !== 1 || version[0] !== 0) throw new Unusual("version is not v1(0)");
  const { commonName } = walkName(info, info.expect(TAG.SEQUENCE, "subject"));
  const spkiTlv = info.expect(TAG.SEQUENCE, "subjectPKInfo");
  walkSpkiShape(info, spkiTlv);
  const attrs = info.inside(info.expect(contextTag(0), "attributes"));
  info.finish("certificationRequestInfo");
  const sanGroups: SanGroup[] = [];
  while (!attrs.done) walkAttribute(attrs, attrs.expect(TAG.SEQUENCE, "Attribute"), sanGroups);

  return {
    info: top.whole(infoTlv),
    // A copy, not a view: the key outlives the request (it goes into the certificate and the
    // store), and a view would keep the whole request buffer alive with it.
    spki: new Uint8Array(info.whole(spkiTlv)),
    signatureAlgorithm,
    signature: sigContent.subarray(1),
    commonName,
    sanGroups,
  };
}

/** AlgorithmIdentifier (RFC 5280 §4.1.1.2) of a signature: the OID, parameters absent or NULL (RFC 4055 §5, RFC 5758 §3.2). */
function algorithmWithoutParameters(parent: DerReader, t: Tlv): string {
  const r = parent.inside(t);
  const oid = strictOid(r.content(r.expect(TAG.OID, "algorithm")));
  const params = r.optional(TAG.NULL);
  if (params && params.end !== params.contentStart) throw new Unusual("NULL with content");
  r.finish("AlgorithmIdentifier");
  return oid;
}


/**
 * Attribute ::= SEQUENCE { type OID, values SET OF ANY } (RFC 2986 §4.1). Only the PKCS#9
 * extensionRequest (RFC 2985 §5.4.2) is read; any other attribute (challengePassword…) is rare and
 * its values would need a full BER decode to refuse exactly what the object model refuses.
 */
function walkAttribute(parent: DerReader, t: Tlv, out: SanGroup[]): void {
  const a = parent.inside(t);
  const type = strictOid(a.content(a.expect(TAG.OID, "attribute type")));
  if (type !== OID.extensionRequest) throw new Unusual(`attribute ${type}`);
  const values = a.inside(a.expect(TAG.SET, "attribute values"));
  a.finish("Attribute");
  while (!values.done) {
    // Extensions ::= SEQUENCE OF Extension (RFC 5280 §4.1)
    const exts = values.inside(values.expect(TAG.SEQUENCE, "Extensions"));
    while (!exts.done) {
      // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
      const e = exts.inside(exts.expect(TAG.SEQUENCE, "Extension"));
      const id = strictOid(e.content(e.expect(TAG.OID, "extnID")));
      const critical = e.optional(TAG.BOOLEAN);
      if (critical) strictBoolean(e.content(critical));
      const value = e.expect(TAG.OCTET_STRING, "extnValue");
      e.finish("Extension");
      if (id === OID.subjectAltName) out.push({ sans: walkGeneralNames(e.content(value)), other: 0 });
    }
  }
}

