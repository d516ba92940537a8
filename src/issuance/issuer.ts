import { createHash, type KeyObject } from "node:crypto";
import type { Name } from "@peculiar/asn1-x509";
import { OperatorError } from "../core/errors.js";
import { SIGNATURE_SCHEMES } from "../core/key-type.js";
import type { Signer } from "../signing/signer.js";
import { parseCertificateDer, type CertificateInfo } from "../x509/certificate-info.js";
import type { IssuerRef } from "../x509/profile.js";
import type { IssuerRecord } from "../storage/ports.js";
import { signerPublicKey, verifySignature } from "./sign-tbs.js";

/** A CA certificate paired with the Signer for its key. */
export interface Issuer {
  der: Uint8Array;
  info: CertificateInfo;
  subject: Name;
  keyId: Uint8Array;
  keyIdHex: string;
  signer: Signer;
  /** The signer's public key, imported once here and reused by every verify-after-sign (signTbs). */
  publicKey: KeyObject;
  ref: IssuerRef;
}

/**
 * Binds a CA certificate to its Signer, failing fast when they do not belong together (Boulder
 * issuance/issuer.go loadSigner): same public key, and a probe signature that verifies.
 */
export async function bindIssuer(der: Uint8Array, signer: Signer): Promise<Issuer> {
  const { cert, info } = parseCertificateDer(der);
  if (!info.isCA) throw new OperatorError("issuer certificate is not a CA");
  if (!info.subjectKeyId) throw new OperatorError("issuer certificate has no subject key identifier");
  if (!Buffer.from(info.spki).equals(Buffer.from(signer.publicKeySpki))) {
    throw new OperatorError("CA key does not match its certificate (different public key)");
  }
  const probe = createHash("sha256").update("fleetca key probe").update(info.spki).digest();
  if (!verifySignature(info.spki, signer.keyType, probe, await signer.sign(probe))) {
    throw new OperatorError("CA key does not match its certificate (probe signature failed)");
  }
  return {
    der,
    info,
    subject: cert.tbsCertificate.subject,
    keyId: info.subjectKeyId,
    keyIdHex: Buffer.from(info.subjectKeyId).toString("hex"),
    signer,
    publicKey: signerPublicKey(signer),
    ref: { subject: cert.tbsCertificate.subject, keyId: info.subjectKeyId, scheme: SIGNATURE_SCHEMES[signer.keyType] },
  };
}

/**
 * The issuing intermediate: of the active intermediates that are valid now and not revoked by
 * their root (RFC 5280 §5: a CA on its parent's CRL must issue nothing more), the one activated
 * last (`fleetca rotate intermediate`, `fleetca revoke-issuer`). A prepared one that was never
 * activated does not issue.
 */
export function currentIntermediate(issuers: IssuerRecord[], now: Date): IssuerRecord {
  const candidates = issuers
    .filter(
      (i) => i.role === "intermediate" && i.status === "active" && i.revokedAt === null && i.activatedAt !== null && i.notBefore <= now && i.notAfter > now,
    )
    .sort((a, b) => b.activatedAt!.getTime() - a.activatedAt!.getTime() || b.notBefore.getTime() - a.notBefore.getTime());
  if (!candidates[0]) throw new OperatorError("no valid intermediate CA in dataDir (all expired, revoked or retired)");
  return candidates[0];
}
