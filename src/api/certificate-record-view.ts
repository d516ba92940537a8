import { crlReasonName } from "../core/revocation-reason.js";
import { sansToList } from "../core/sans.js";
import type { CertificateRecord } from "../storage/ports.js";
import { toPem } from "../x509/pem.js";

/** The JSON shape of an inventory record (GET /v1/certs/:serial): times ISO 8601, reason by RFC 5280 name. */
export function certificateRecordView(r: CertificateRecord): Record<string, unknown> {
  return {
    serial: r.serial,
    status: r.status,
    sans: sansToList(r.sans),
    subjectCommonName: r.subjectCommonName,
    notBefore: r.notBefore.toISOString(),
    notAfter: r.notAfter.toISOString(),
    provisioner: r.provisioner,
    issuerKeyId: r.issuerKeyId,
    renewedFrom: r.renewedFrom,
    // The lineage (issue 15): the renewal that replaced this one, the chain's first certificate,
    // and when the token that started the chain was verified (maxRenewalAge counts from it).
    supersededBy: r.supersededBy ?? null,
    lineage: r.lineage ?? r.serial,
    attestedAt: (r.attestedAt ?? r.createdAt).toISOString(),
    createdAt: r.createdAt.toISOString(),
    revokedAt: r.revokedAt?.toISOString() ?? null,
    revocationReason: r.revocationReason === null ? null : crlReasonName(r.revocationReason),
    certificate: toPem(r.der, "CERTIFICATE"),
  };
}
