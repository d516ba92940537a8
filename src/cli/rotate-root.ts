import { createHash } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { OperatorError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import type { FleetcaConfig } from "../config/schema.js";
import type { CaStorage } from "../storage/ca-storage.js";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { createCrossCertificate, createRootCertificate } from "../issuance/hierarchy.js";
import { bindIssuer, currentIntermediate } from "../issuance/issuer.js";
import { crlUrl } from "../revocation/crl/crl-shard.js";
import { signRootCrl } from "../revocation/crl/root-crl.js";
import { openCa } from "./open-ca.js";
import { recordOperatorEvent } from "./operator-event.js";
import { caKeyName } from "../signing/ca-key-name.js";

export interface RootRotation {
  oldRootKeyId: string;
  newRootKeyId: string;
  /** SHA-256 of the new root's DER: what `cert-agent --root-fingerprint` pins on new hosts. */
  newRootFingerprint: string;
  crossCertificateSerial: string;
}

/**
 * `fleetca rotate root`: a new root key and self-signed certificate, and a cross certificate for
 * it signed by the current root, stored together; /roots.pem then serves both roots and the cross
 * certificate (agents pinned to the old root accept the new one through it: agent/trust.ts). The
 * new root gets its own CRL. Nothing issues from it until `fleetca rotate intermediate` makes an
 * intermediate under it; the old root stays trusted until `fleetca retire root`.
 */
export async function rotateRoot(config: FleetcaConfig, passphrase: Secret | undefined, clock: Clock): Promise<RootRotation> {
  const ca = await openCa(config, passphrase, { create: false });
  try {
    const issuers = await ca.storage.issuers.listIssuers();
    const roots = issuers.filter((i) => i.role === "root" && i.status === "active").sort((a, b) => b.notBefore.getTime() - a.notBefore.getTime());
    const current = roots[0];
    if (!current) throw new OperatorError(`no active root in ${ca.storage.location}`);
    const oldRoot = await bindIssuer(current.der, await ca.caKeys.load(current.keyName));
    const now = clock.now();
    const keyName = caKeyName("root", now);
    const signer = await ca.caKeys.generate(keyName, config.ca.keyType);
    // The new root keeps the old root's name: the cross certificate is then self-issued (issuer
    // name = subject name), which RFC 5280 §4.2.1.9 leaves out of path length, so the old root's
    // pathLenConstraint 1 still admits new-leaf → new-intermediate → cross → old root. This is
    // the root key update of RFC 4210 §4.4 (the "NewWithOld" certificate); the key identifiers
    // tell the two roots apart in path building (RFC 5280 §4.2.1.1).
    const subject = AsnConvert.parse(current.der, Certificate).tbsCertificate.subject;
    const rootDer = await createRootCertificate(signer, { caName: config.ca.name, validityMs: config.ca.rootValidity, clock, subject });
    const newRoot = await bindIssuer(rootDer, signer);
    const crossDer = await createCrossCertificate(
      oldRoot,
      { subject, spki: signer.publicKeySpki, keyType: signer.keyType, notAfter: newRoot.info.notAfter },
      { clock, crlUrl: crlUrl(config.publicUrl, oldRoot.keyIdHex, null) },
    );
    const cross = await bindIssuer(crossDer, signer);
    await ca.storage.issuerLifecycle.addRootWithCross(
      {
        keyId: newRoot.keyIdHex,
        role: "root",
        keyName,
        parentKeyId: null,
        der: rootDer,
        notBefore: newRoot.info.notBefore,
        notAfter: newRoot.info.notAfter,
        status: "active",
        createdAt: now,
        revokedAt: null,
        revocationReason: null,
        // Roots never issue leaves: only intermediates are activated (migration v10).
        activatedAt: null,
      },
      { subjectKeyId: newRoot.keyIdHex, issuerKeyId: oldRoot.keyIdHex, der: crossDer, notAfter: cross.info.notAfter, createdAt: now },
    );
    // Relying parties that check CRLs for the whole chain need one from the new root too.
    await signRootCrl(newRoot, await ca.storage.issuers.listIssuers(), ca.storage.crls, clock, config.crl.rootValidity);
    const result: RootRotation = {
      oldRootKeyId: oldRoot.keyIdHex,
      newRootKeyId: newRoot.keyIdHex,
      newRootFingerprint: createHash("sha256").update(rootDer).digest("hex"),
      crossCertificateSerial: cross.info.serial,
    };
    await recordOperatorEvent(ca.storage, "root_rotated", {
      old_root: result.oldRootKeyId,
      new_root: result.newRootKeyId,
      new_root_sha256: result.newRootFingerprint,
      cross_serial: result.crossCertificateSerial,
    });
    return result;
  } finally {
    await ca.storage.close();
  }
}

/**
 * `fleetca retire root KEYID`: the root leaves /roots.pem, with the cross certificates that name
 * it. Refused while it is the only active root, or while the intermediate that issues today
 * chains to it (rotate the intermediate under the new root first: leaves must not outlive trust
 * in their root on hosts that refresh ca.pem).
 */
export async function retireRoot(storage: CaStorage, keyId: string, clock: Clock): Promise<{ retired: string; remaining: string[] }> {
  const issuers = await storage.issuers.listIssuers();
  const root = issuers.find((i) => i.keyId === keyId.toLowerCase());
  if (!root || root.role !== "root") throw new OperatorError(`no root with key id ${keyId} (fleetca status / the issuers table lists them)`);
  if (root.status !== "active") throw new OperatorError(`root ${root.keyId} is already retired`);
  const others = issuers.filter((i) => i.role === "root" && i.status === "active" && i.keyId !== root.keyId);
  if (others.length === 0) throw new OperatorError(`root ${root.keyId} is the only active root; run "fleetca rotate root" first`);
  const issuing = currentIntermediate(issuers, clock.now());
  if (issuing.parentKeyId === root.keyId) {
    throw new OperatorError(`the issuing intermediate ${issuing.keyId} chains to root ${root.keyId}; run "fleetca rotate intermediate" (under the new root) first`);
  }
  if (!(await storage.issuerLifecycle.retireRoot(root.keyId))) throw new OperatorError(`root ${root.keyId} could not be retired (changed meanwhile)`);
  await recordOperatorEvent(storage, "root_retired", { root: root.keyId, remaining: others.map((o) => o.keyId).join(",") });
  return { retired: root.keyId, remaining: others.map((o) => o.keyId) };
}
