import type { Sans } from "../../core/sans.js";
import type { SerialHex } from "../../core/serial.js";
import type { CertificateRecord, IssuerRecord, ProvisionerKeyRecord } from "../ports.js";

/**
 * Rows of the PostgreSQL schema (storage/migrations.ts, `postgres` dialect) to the port records
 * and back. BIGINT columns arrive as numbers (pg-pool.ts parses int8), BYTEA as a Buffer.
 */

export interface PgCertRow {
  serial: string;
  issuer_key_id: string;
  sans: string;
  subject_cn: string | null;
  not_before: number;
  not_after: number;
  der: Buffer;
  provisioner: string;
  token_id: string | null;
  status: "valid" | "revoked";
  revoked_at: number | null;
  revocation_reason: number | null;
  created_at: number;
  renewed_from: string | null;
  crl_shard: number | null;
  superseded_by: string | null;
  lineage: string | null;
  attested_at: number | null;
  instance: string | null;
}

/** The columns a certificate is inserted with, in the order of `certificateValues`. */
export const CERT_COLUMNS =
  "serial, issuer_key_id, sans, subject_cn, not_before, not_after, der, provisioner, token_id, status, revoked_at, revocation_reason, created_at, renewed_from, crl_shard, superseded_by, lineage, attested_at, instance";

/** Every column but the generated crl_record (migration v6), which no record carries. */
export const CERT_SELECT = CERT_COLUMNS;

/** A new certificate starts its own lineage at its creation (as sqlite-store.ts certToRow). */
export function certificateValues(c: CertificateRecord): unknown[] {
  return [
    c.serial,
    c.issuerKeyId,
    JSON.stringify(c.sans),
    c.subjectCommonName,
    c.notBefore.getTime(),
    c.notAfter.getTime(),
    bytea(c.der),
    c.provisioner,
    c.tokenId,
    c.status,
    c.revokedAt?.getTime() ?? null,
    c.revocationReason,
    c.createdAt.getTime(),
    c.renewedFrom,
    c.crlShard,
    c.supersededBy ?? null,
    c.lineage ?? c.serial,
    (c.attestedAt ?? c.createdAt).getTime(),
    c.instance ?? null,
  ];
}

export function certFromRow(r: PgCertRow): CertificateRecord {
  return {
    serial: r.serial as SerialHex,
    issuerKeyId: r.issuer_key_id,
    sans: JSON.parse(r.sans) as Sans,
    subjectCommonName: r.subject_cn,
    notBefore: new Date(r.not_before),
    notAfter: new Date(r.not_after),
    der: new Uint8Array(r.der),
    provisioner: r.provisioner,
    tokenId: r.token_id,
    status: r.status,
    revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
    revocationReason: r.revocation_reason,
    createdAt: new Date(r.created_at),
    renewedFrom: r.renewed_from as SerialHex | null,
    crlShard: r.crl_shard,
    supersededBy: r.superseded_by as SerialHex | null,
    lineage: (r.lineage ?? r.serial) as SerialHex,
    attestedAt: new Date(r.attested_at ?? r.created_at),
    instance: r.instance,
  };
}

export interface PgIssuerRow {
  key_id: string;
  role: IssuerRecord["role"];
  key_name: string;
  parent_key_id: string | null;
  der: Buffer;
  not_before: number;
  not_after: number;
  status: IssuerRecord["status"];
  created_at: number;
  revoked_at: number | null;
  revocation_reason: number | null;
  activated_at: number | null;
}

export function issuerFromRow(r: PgIssuerRow): IssuerRecord {
  return {
    keyId: r.key_id,
    role: r.role,
    keyName: r.key_name,
    parentKeyId: r.parent_key_id,
    der: new Uint8Array(r.der),
    notBefore: new Date(r.not_before),
    notAfter: new Date(r.not_after),
    status: r.status,
    createdAt: new Date(r.created_at),
    revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
    revocationReason: r.revocation_reason,
    activatedAt: r.activated_at === null ? null : new Date(r.activated_at),
  };
}

export function provisionerKeyFromRow(r: { name: string; kid: string; public_jwk: string; created_at: number }): ProvisionerKeyRecord {
  return { name: r.name, kid: r.kid, publicJwk: JSON.parse(r.public_jwk) as Record<string, unknown>, createdAt: new Date(r.created_at) };
}

/** A Uint8Array as the Buffer node-postgres sends as BYTEA, without copying. */
export function bytea(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
