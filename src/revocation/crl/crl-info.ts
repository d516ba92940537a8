import { AsnConvert } from "@peculiar/asn1-schema";
import { AuthorityKeyIdentifier, CertificateList, CRLNumber, CRLReason } from "@peculiar/asn1-x509";
import { serialFromBytes, type SerialHex } from "../../core/serial.js";
import { OID } from "../../x509/oids.js";

/** What fleetca reads back from a CRL: its own, to check what it signed or what it stored. */
export interface CrlInfo {
  crlNumber: number | null;
  /** DER of the issuer Name, compared with the issuing CA's subject. */
  issuerDer: Uint8Array;
  authorityKeyId: Uint8Array | null;
  thisUpdate: Date;
  nextUpdate: Date | null;
  signatureAlgorithmOid: string;
  entries: Array<{ serial: SerialHex; revokedAt: Date; reason: number | null }>;
}

/** Decodes a DER CertificateList (RFC 5280 §5.1); throws when it is not one. */
export function parseCrl(der: Uint8Array): CrlInfo {
  const crl = AsnConvert.parse(der, CertificateList);
  const tbs = crl.tbsCertList;
  const ext = (oid: string) => tbs.crlExtensions?.find((e) => e.extnID === oid);
  const numberExt = ext(OID.cRLNumber);
  const akiExt = ext(OID.authorityKeyIdentifier);
  const aki = akiExt ? AsnConvert.parse(akiExt.extnValue.buffer, AuthorityKeyIdentifier) : undefined;
  return {
    crlNumber: numberExt ? AsnConvert.parse(numberExt.extnValue.buffer, CRLNumber).value : null,
    issuerDer: new Uint8Array(AsnConvert.serialize(tbs.issuer)),
    authorityKeyId: aki?.keyIdentifier ? new Uint8Array(aki.keyIdentifier.buffer) : null,
    thisUpdate: tbs.thisUpdate.getTime(),
    nextUpdate: tbs.nextUpdate ? tbs.nextUpdate.getTime() : null,
    signatureAlgorithmOid: crl.signatureAlgorithm.algorithm,
    entries: (tbs.revokedCertificates ?? []).map((r) => {
      const reasonExt = r.crlEntryExtensions?.find((e) => e.extnID === OID.cRLReasons);
      return {
        serial: serialFromBytes(magnitude(new Uint8Array(r.userCertificate))),
        revokedAt: r.revocationDate.getTime(),
        reason: reasonExt ? AsnConvert.parse(reasonExt.extnValue.buffer, CRLReason).reason : null,
      };
    }),
  };
}

/** The INTEGER's content without its sign octet, as fleetca writes serials (core/serial.ts). */
function magnitude(b: Uint8Array): Uint8Array {
  return b.length > 1 && b[0] === 0 ? b.subarray(1) : b;
}
