import { randomBytes } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { OperatorError } from "../core/errors.js";
import type { RenewalWindow } from "../core/renewal-window.js";
import type { FleetcaConfig } from "../config/schema.js";
import { createIntermediateCertificate } from "../issuance/hierarchy.js";
import { bindIssuer, currentIntermediate, type Issuer } from "../issuance/issuer.js";
import { renewalPull } from "../registration/renewal-override.js";
import { crlUrl } from "../revocation/crl/crl-shard.js";
import type { IssuerRecord } from "../storage/ports.js";
import { SqliteIssuerLifecycle } from "../storage/sqlite/sqlite-issuer-lifecycle.js";
import { SqliteRenewalWindows } from "../storage/sqlite/sqlite-renewal-windows.js";
import type { OpenedDataDir } from "./data-dir.js";

/** `fleetca rotate intermediate` without --migrate-within: the old intermediate's fleet renews within a day. */
export const DEFAULT_MIGRATE_WITHIN_MS = 24 * 3_600_000;

/** A new intermediate stored (key wrapped in the keystore, certificate and row in the database) but not issuing yet. */
export interface PreparedIntermediate {
  keyId: string;
  keyName: string;
  rootKeyId: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * What a rotation did, for the operator's output and for the audit log (which records it as a
 * "rotation" event): the intermediate now issuing, the one it replaced (which keeps answering
 * CRL and OCSP for what it issued), and the early renewal window given to the old one's fleet.
 */
export interface RotationResult {
  event: "intermediate-rotated";
  at: Date;
  current: PreparedIntermediate;
  previousKeyId: string;
  /** The renewal-window override recorded for the previous intermediate's certificates. */
  migration: { matched: number; window: RenewalWindow };
}

/**
 * Step 1: a new intermediate key in the keystore and its certificate from the newest active root
 * (after `fleetca rotate root`, the new one: that is how issuance moves under it); the root key is unwrapped for this signature only (and dropped with this
 * function's scope). The row is stored with no activation time: nothing issues from it yet.
 */
export async function prepareIntermediate(dd: OpenedDataDir, config: FleetcaConfig, clock: Clock, root?: Issuer): Promise<PreparedIntermediate> {
  const now = clock.now();
  root ??= await unwrapNewestRoot(dd, now);
  const stamp = now.toISOString().replace(/[-:]/g, "").slice(0, 15).toLowerCase();
  // The random suffix keeps two rotations in the same second from refusing each other's key file.
  const keyName = `intermediate-${stamp}-${randomBytes(3).toString("hex")}`;
  const signer = await dd.keys.generate(keyName, config.ca.keyType);
  const der = await createIntermediateCertificate(root, signer, {
    caName: config.ca.name,
    validityMs: config.ca.intermediateValidity,
    clock,
    crlUrl: crlUrl(config.publicUrl, root.keyIdHex, null),
  });
  const intermediate = await bindIssuer(der, signer);
  const record: IssuerRecord = {
    keyId: intermediate.keyIdHex,
    role: "intermediate",
    keyName,
    parentKeyId: root.keyIdHex,
    der,
    notBefore: intermediate.info.notBefore,
    notAfter: intermediate.info.notAfter,
    status: "active",
    createdAt: now,
    revokedAt: null,
    revocationReason: null,
    activatedAt: null,
  };
  dd.store.addIssuer(record);
  return { keyId: record.keyId, keyName, rootKeyId: root.keyIdHex, notBefore: record.notBefore, notAfter: record.notAfter };
}

/** The newest active, valid root, with its key unwrapped. */
async function unwrapNewestRoot(dd: OpenedDataDir, now: Date): Promise<Issuer> {
  const roots = dd.store
    .listIssuers()
    .filter((i) => i.role === "root" && i.status === "active" && i.notBefore <= now && i.notAfter > now)
    .sort((a, b) => b.notBefore.getTime() - a.notBefore.getTime() || b.createdAt.getTime() - a.createdAt.getTime());
  const newest = roots[0];
  if (!newest) throw new OperatorError("no active, valid root to certify a new intermediate; rotate the root first");
  return bindIssuer(newest.der, dd.keys.load(newest.keyName));
}

/**
 * The root that certified this intermediate, with its key unwrapped (the only time a command
 * holds it: to certify a new intermediate or sign the root's CRL). It must be active and valid.
 */
export async function unwrapRootOf(dd: OpenedDataDir, intermediateKeyId: string, now: Date): Promise<Issuer> {
  const issuers = dd.store.listIssuers();
  const parent = issuers.find((i) => i.keyId === intermediateKeyId)?.parentKeyId;
  const rootRecord = issuers.find((i) => i.keyId === parent && i.role === "root");
  if (!rootRecord || rootRecord.status !== "active" || rootRecord.notAfter <= now) {
    throw new OperatorError(`the root that signed intermediate ${intermediateKeyId} is not active and valid; rotate the root first`);
  }
  return bindIssuer(rootRecord.der, dd.keys.load(rootRecord.keyName));
}

/**
 * Step 2, one transaction: the prepared intermediate becomes the current issuer (the daemon and
 * its workers switch within a second or two), and the previous one's certificates get a renewal
 * window ending within `migrateWithinMs` (RFC 9773 renewalInfo), so the fleet moves over early
 * instead of at the end of each certificate's life. The previous intermediate stays active: its
 * CRLs and OCSP answers go on until its last certificate expires.
 */
export function activateIntermediate(
  dd: OpenedDataDir,
  prepared: PreparedIntermediate,
  previousKeyId: string,
  migrateWithinMs: number,
  clock: Clock,
): { at: Date; migration: { matched: number; window: RenewalWindow } } {
  const lifecycle = new SqliteIssuerLifecycle(dd.store.db);
  const windows = new SqliteRenewalWindows(dd.store.db);
  return dd.store.db.transaction(() => {
    const at = clock.now();
    if (!lifecycle.activateIntermediate(prepared.keyId, at)) throw new OperatorError(`intermediate ${prepared.keyId} cannot be activated (revoked or gone)`);
    const pull = renewalPull({ kind: "issuer", value: previousKeyId }, migrateWithinMs, clock);
    const migration = { matched: windows.recordOverride(pull.override, pull.override.createdAt).matched, window: pull.window };
    return { at, migration };
  })();
}

/** `fleetca rotate intermediate`: prepare, then activate. Works while the daemon runs (it follows the database). */
export async function rotateIntermediate(
  dd: OpenedDataDir,
  config: FleetcaConfig,
  clock: Clock,
  opts: { migrateWithinMs: number } = { migrateWithinMs: DEFAULT_MIGRATE_WITHIN_MS },
): Promise<RotationResult> {
  const previous = currentIntermediate(dd.store.listIssuers(), clock.now());
  const current = await prepareIntermediate(dd, config, clock);
  const { at, migration } = activateIntermediate(dd, current, previous.keyId, opts.migrateWithinMs, clock);
  return { event: "intermediate-rotated", at, current, previousKeyId: previous.keyId, migration };
}
