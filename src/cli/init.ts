import { createHash } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { OperatorError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import type { FleetcaConfig } from "../config/schema.js";
import { ensureBootstrapKey } from "../attestation/bootstrap.js";
import { loadOrCreateAuditKey } from "../audit/audit-key.js";
import { SqliteAuditLogPort } from "../storage/sqlite/sqlite-audit-log-port.js";
import { createIntermediateCertificate, createRootCertificate } from "../issuance/hierarchy.js";
import { bindIssuer } from "../issuance/issuer.js";
import { crlUrl } from "../revocation/crl/crl-shard.js";
import { signRootCrl } from "../revocation/crl/root-crl.js";
import { SqliteRevocationPorts } from "../storage/sqlite/sqlite-revocation-ports.js";
import { dataDirInitialised, openDataDir, type OpenedDataDir } from "./data-dir.js";
import { SqliteOperationsPorts } from "../storage/sqlite/sqlite-operations-ports.js";

export interface InitResult {
  rootKeyId: string;
  intermediateKeyId: string;
  /** SHA-256 of the root certificate DER, what `cert-agent --root-fingerprint` pins. */
  rootFingerprint: string;
  developmentMode: boolean;
}

/**
 * Creates the hierarchy: root key + self-signed root, intermediate key + cert signed by the root,
 * and the bootstrap provisioners' keys. Refuses to touch a data dir that already has one.
 */
export async function initHierarchy(config: FleetcaConfig, passphrase: Secret | undefined, clock: Clock): Promise<InitResult> {
  if (dataDirInitialised(config.dataDir)) {
    throw new OperatorError(`${config.dataDir} already holds a CA; refusing to overwrite it`);
  }
  const dd = openDataDir(config.dataDir, passphrase, { create: true });
  try {
    return await createHierarchy(dd, config, clock);
  } finally {
    dd.store.close();
  }
}

async function createHierarchy(dd: OpenedDataDir, config: FleetcaConfig, clock: Clock): Promise<InitResult> {
  const stamp = clock.now().toISOString().replace(/[-:]/g, "").slice(0, 15).toLowerCase();
  const rootKeyName = `root-${stamp}`;
  const rootSigner = await dd.keys.generate(rootKeyName, config.ca.keyType);
  const rootDer = await createRootCertificate(rootSigner, { caName: config.ca.name, validityMs: config.ca.rootValidity, clock });
  const root = await bindIssuer(rootDer, rootSigner);

  const intKeyName = `intermediate-${stamp}`;
  const intSigner = await dd.keys.generate(intKeyName, config.ca.keyType);
  const intDer = await createIntermediateCertificate(root, intSigner, {
    caName: config.ca.name,
    validityMs: config.ca.intermediateValidity,
    clock,
    crlUrl: crlUrl(config.publicUrl, root.keyIdHex, null),
  });
  const intermediate = await bindIssuer(intDer, intSigner);

  const now = clock.now();
  dd.store.db.transaction(() => {
    dd.store.addIssuer({
      keyId: root.keyIdHex,
      role: "root",
      keyName: rootKeyName,
      parentKeyId: null,
      der: rootDer,
      notBefore: root.info.notBefore,
      notAfter: root.info.notAfter,
      status: "active",
      createdAt: now,
      revokedAt: null,
      revocationReason: null,
      activatedAt: null,
    });
    dd.store.addIssuer({
      keyId: intermediate.keyIdHex,
      role: "intermediate",
      keyName: intKeyName,
      parentKeyId: root.keyIdHex,
      der: intDer,
      notBefore: intermediate.info.notBefore,
      notAfter: intermediate.info.notAfter,
      status: "active",
      createdAt: now,
      revokedAt: null,
      revocationReason: null,
      activatedAt: now,
    });
  })();
  // The root's CRL (empty): relying parties that check CRLs for the whole chain need one.
  await signRootCrl(root, dd.store.listIssuers(), new SqliteRevocationPorts(dd.store), clock, config.crl.rootValidity);
  for (const p of config.provisioners) if (p.type === "bootstrap") await ensureBootstrapKey(p.name, dd.keys, new SqliteOperationsPorts(dd.store), clock);
  // The issuance log's own signing key (tree heads), made with the CA so the key set is complete from the start.
  await loadOrCreateAuditKey(dd.keys, new SqliteAuditLogPort(dd.store.audit), clock);
  return {
    rootKeyId: root.keyIdHex,
    intermediateKeyId: intermediate.keyIdHex,
    rootFingerprint: createHash("sha256").update(rootDer).digest("hex"),
    developmentMode: dd.kek.mode === "development",
  };
}
