import { AsnConvert } from "@peculiar/asn1-schema";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { Extensions, SubjectAlternativeName } from "@peculiar/asn1-x509";
import { CaError } from "../core/errors.js";
import { commonNameOf, sansFromGeneralNames } from "./certificate-info.js";
import type { CsrFields, SanGroup } from "./csr-fields.js";
import { OID } from "./oids.js";

/**
 * A PKCS#10 request (RFC 2986 §4) decoded with the ASN.1 object model: what fleetca always did,
 * kept for the requests the DER walk (csr-walk.ts) leaves alone (BER, unusual strings or
 * attributes, SAN types fleetca refuses, malformed input) and as the walk's cross-check in the
 * tests. Structural refusals here keep their wording; the semantic checks are csr.ts's.
 */
export function csrFieldsByObjectModel(der: Uint8Array): CsrFields {
  let req: CertificationRequest;
  try {
    req = AsnConvert.parse(der, CertificationRequest);
  } catch {
    throw new CaError("bad_csr", "csr is not a valid PKCS#10 structure");
  }
  const info = req.certificationRequestInfo;
  if (info.version !== 0) throw new CaError("bad_csr", "csr version must be 1 (0)");
  if (!req.certificationRequestInfoRaw) throw new CaError("bad_csr", "csr is not a valid PKCS#10 structure");
  return {
    info: new Uint8Array(req.certificationRequestInfoRaw),
    spki: new Uint8Array(AsnConvert.serialize(info.subjectPKInfo)),
    signatureAlgorithm: req.signatureAlgorithm.algorithm,
    signature: new Uint8Array(req.signature),
    commonName: commonNameOf(info.subject),
    sanGroups: sanGroupsOf(req),
  };
}

/** Decoded one extension at a time, after the signature has verified (see CsrFields.sanGroups). */
function* sanGroupsOf(req: CertificationRequest): Generator<SanGroup> {
  for (const attr of req.certificationRequestInfo.attributes) {
    if (attr.type !== OID.extensionRequest) continue;
    for (const value of attr.values) {
      let exts: Extensions;
      try {
        exts = AsnConvert.parse(value, Extensions);
      } catch {
        throw new CaError("bad_csr", "csr extensionRequest attribute is malformed");
      }
      for (const ext of exts) {
        if (ext.extnID !== OID.subjectAltName) continue;
        let names: SubjectAlternativeName;
        try {
          names = AsnConvert.parse(ext.extnValue.buffer, SubjectAlternativeName);
        } catch {
          throw new CaError("bad_csr", "csr subjectAltName is malformed");
        }
        let group: SanGroup;
        try {
          group = sansFromGeneralNames(names);
        } catch {
          // An iPAddress of neither 4 nor 16 octets decodes to text canonicalIp cannot read; it
          // used to escape as a TypeError (a 500) instead of the client's mistake it is.
          throw new CaError("bad_csr", "csr subjectAltName is malformed");
        }
        yield group;
      }
    }
  }
}
