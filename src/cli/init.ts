import { createHash } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { OperatorError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import type { FleetcaConfig } from "../config/schema.js";
import { ensureBootstrapKey } from "../attestation/bootstrap.js";
import { loadOrCreateAuditKey } from "../audit/audit-key.js";
import { createIntermediateCertificate, createRootCertificate } from "../issuance/hierarchy.js";
import { bindIssuer } from "../issuance/issuer.js";
import { crlUrl } from "../revocation/crl/crl-shard.js";
import { signRootCrl } from "../revocation/crl/root-crl.js";
import { openPgCaStorage } from "../storage/postgres/pg-ca-storage.js";
import { dataDirInitialised, type OpenedCa } from "./data-dir.js";
import { openCa } from "./open-ca.js";

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
  if (config.storage.type === "sqlite" && dataDirInitialised(config.dataDir)) {
    throw new OperatorError(`${config.dataDir} already holds a CA; refusing to overwrite it`);
  }
  const dd = await openCa(config, passphrase, { create: true });
  try {
    // Replicas starting together on an empty database: one makes the CA, the others find it.
    return await dd.storage.exclusively("init", async () => {
      if (config.storage.type === "postgres" && (await dd.storage.issuers.listIssuers()).length > 0) {
        throw new OperatorError(`the database at ${dd.storage.location} already holds a CA; refusing to overwrite it`);
      }
      return createHierarchy(dd, config, clock);
    });
  } finally {
    await dd.storage.close();
  }
}

/**
 * True when the config's storage already holds a hierarchy: the data dir's (SQLite), or the
 * database's issuers (PostgreSQL; opening it also brings its schema up to date).
 */
export async function caInitialised(config: FleetcaConfig): Promise<boolean> {
  if (config.storage.type === "sqlite") return dataDirInitialised(config.dataDir);
  const { storage } = await openPgCaStorage({ url: config.storage.url, pool: 1, ...(config.storage.passwordFile && { passwordFile: config.storage.passwordFile }) });
  try {
    return (await storage.issuers.listIssuers()).length > 0;
  } finally {
    await storage.close();
  }
}

async function createHierarchy(dd: OpenedCa, config: FleetcaConfig, clock: Clock): Promise<InitResult> {
  const stamp = clock.now().toISOString().replace(/[-:]/g, "").slice(0, 15).toLowerCase();
  const rootKeyName = `root-${stamp}`;
  const rootSigner = await dd.caKeys.generate(rootKeyName, config.ca.keyType);
  const rootDer = await createRootCertificate(rootSigner, { caName: config.ca.name, validityMs: config.ca.rootValidity, clock });
  const root = await bindIssuer(rootDer, rootSigner);

  const intKeyName = `intermediate-${stamp}`;
  const intSigner = await dd.caKeys.generate(intKeyName, config.ca.keyType);
  const intDer = await createIntermediateCertificate(root, intSigner, {
    caName: config.ca.name,
    validityMs: config.ca.intermediateValidity,
    clock,
    crlUrl: crlUrl(config.publicUrl, root.keyIdHex, null),
  });
  const intermediate = await bindIssuer(intDer, intSigner);

  const now = clock.now();
  await dd.storage.issuers.addIssuers([
    {
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
    },
    {
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
    },
  ]);
  // The root's CRL (empty): relying parties that check CRLs for the whole chain need one.
  await signRootCrl(root, await dd.storage.issuers.listIssuers(), dd.storage.crls, clock, config.crl.rootValidity);
  for (const p of config.provisioners) if (p.type === "bootstrap") await ensureBootstrapKey(p.name, dd.caKeys, dd.storage.operations, clock);
  // The issuance log's own signing key (tree heads), made with the CA so the key set is complete from the start.
  await loadOrCreateAuditKey(dd.caKeys, dd.storage.audit, clock);
  return {
    rootKeyId: root.keyIdHex,
    intermediateKeyId: intermediate.keyIdHex,
    rootFingerprint: createHash("sha256").update(rootDer).digest("hex"),
    developmentMode: dd.kek.mode === "development",
  };
}
