import { serialFromBytes, type SerialHex } from "../../core/serial.js";
import { walkCrl } from "./crl-walk.js";

/** What fleetca reads back from a CRL: its own, to check what it signed or what it stored. */
export interface CrlInfo {
  crlNumber: number | null;
  /** DER of the issuer Name, compared with the issuing CA's subject. */
  issuerDer: Uint8Array;
  authorityKeyId: Uint8Array | null;
  thisUpdate: Date;
  nextUpdate: Date | null;
  signatureAlgorithmOid: string;
  distributionPointUrl: string | null;
  entries: Array<{ serial: SerialHex; revokedAt: Date; reason: number | null }>;
}

/**
 * Decodes a DER CertificateList (RFC 5280 §5.1) with every entry in memory; throws when it is
 * not one. For tools and tests: the publisher itself only ever walks (crl-walk.ts).
 */
export function parseCrl(der: Uint8Array): CrlInfo {
  const entries: CrlInfo["entries"] = [];
  const w = walkCrl(der, (serial, revokedAt, reason) => entries.push({ serial: serialFromBytes(Buffer.from(serial, "hex")), revokedAt, reason }));
  return {
    crlNumber: w.crlNumber,
    issuerDer: w.issuerDer,
    authorityKeyId: w.authorityKeyId,
    thisUpdate: w.thisUpdate,
    nextUpdate: w.nextUpdate,
    signatureAlgorithmOid: w.signatureAlgorithmOid,
    distributionPointUrl: w.distributionPointUrl,
    entries,
  };
}
