import type { Clock } from "../core/clock.js";
import { OperatorError } from "../core/errors.js";
import type { RenewalWindow } from "../core/renewal-window.js";
import type { FleetcaConfig } from "../config/schema.js";
import { createIntermediateCertificate } from "../issuance/hierarchy.js";
import { bindIssuer, currentIntermediate, type Issuer } from "../issuance/issuer.js";
import { renewalPull } from "../registration/renewal-override.js";
import { crlUrl } from "../revocation/crl/crl-shard.js";
import type { IssuerRecord } from "../storage/ports.js";
import type { OpenedCa } from "./data-dir.js";
import { caKeyName } from "../signing/ca-key-name.js";

/** `fleetca rotate intermediate` without --migrate-within: the old intermediate's fleet renews within a day. */
export const DEFAULT_MIGRATE_WITHIN_MS = 24 * 3_600_000;

/** A new intermediate stored (key wrapped in the key store, certificate and row in the database) but not issuing yet. */
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
export async function prepareIntermediate(ca: OpenedCa, config: FleetcaConfig, clock: Clock, root?: Issuer): Promise<PreparedIntermediate> {
  const now = clock.now();
  root ??= await unwrapNewestRoot(ca, now);
  const keyName = caKeyName("intermediate", now);
  const signer = await ca.caKeys.generate(keyName, config.ca.keyType);
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
  await ca.storage.issuers.addIssuer(record);
  return { keyId: record.keyId, keyName, rootKeyId: root.keyIdHex, notBefore: record.notBefore, notAfter: record.notAfter };
}

/** The newest active, valid root, with its key unwrapped. */
async function unwrapNewestRoot(ca: OpenedCa, now: Date): Promise<Issuer> {
  const roots = (await ca.storage.issuers.listIssuers())
    .filter((i) => i.role === "root" && i.status === "active" && i.notBefore <= now && i.notAfter > now)
    .sort((a, b) => b.notBefore.getTime() - a.notBefore.getTime() || b.createdAt.getTime() - a.createdAt.getTime());
  const newest = roots[0];
  if (!newest) throw new OperatorError("no active, valid root to certify a new intermediate; rotate the root first");
  return bindIssuer(newest.der, await ca.caKeys.load(newest.keyName));
}

/**
 * The root that certified this intermediate, with its key unwrapped (the only time a command
 * holds it: to certify a new intermediate or sign the root's CRL). It must be active and valid.
 */
export async function unwrapRootOf(ca: OpenedCa, intermediateKeyId: string, now: Date): Promise<Issuer> {
  const issuers = await ca.storage.issuers.listIssuers();
  const parent = issuers.find((i) => i.keyId === intermediateKeyId)?.parentKeyId;
  const rootRecord = issuers.find((i) => i.keyId === parent && i.role === "root");
  if (!rootRecord || rootRecord.status !== "active" || rootRecord.notAfter <= now) {
    throw new OperatorError(`the root that signed intermediate ${intermediateKeyId} is not active and valid; rotate the root first`);
  }
  return bindIssuer(rootRecord.der, await ca.caKeys.load(rootRecord.keyName));
}

/**
 * Step 2, one transaction: the prepared intermediate becomes the current issuer (the daemon and
 * its workers switch within a second or two), and the previous one's certificates get a renewal
 * window ending within `migrateWithinMs` (RFC 9773 renewalInfo), so the fleet moves over early
 * instead of at the end of each certificate's life. The previous intermediate stays active: its
 * CRLs and OCSP answers go on until its last certificate expires.
 */
export async function activateIntermediate(
  ca: OpenedCa,
  prepared: PreparedIntermediate,
  previousKeyId: string,
  migrateWithinMs: number,
  clock: Clock,
): Promise<{ at: Date; migration: { matched: number; window: RenewalWindow } }> {
  const at = clock.now();
  const pull = renewalPull({ kind: "issuer", value: previousKeyId }, migrateWithinMs, clock);
  const r = await ca.storage.issuerLifecycle.changeIssuers({ activate: prepared.keyId, renewalOverride: pull.override }, at);
  if (r.outcome !== "changed") throw new OperatorError(`intermediate ${prepared.keyId} cannot be activated (revoked or gone)`);
  return { at, migration: { matched: r.matched, window: pull.window } };
}

/** `fleetca rotate intermediate`: prepare, then activate. Works while the daemon runs (it follows the database). */
export async function rotateIntermediate(
  ca: OpenedCa,
  config: FleetcaConfig,
  clock: Clock,
  opts: { migrateWithinMs: number } = { migrateWithinMs: DEFAULT_MIGRATE_WITHIN_MS },
): Promise<RotationResult> {
  const previous = currentIntermediate(await ca.storage.issuers.listIssuers(), clock.now());
  const current = await prepareIntermediate(ca, config, clock);
  const { at, migration } = await activateIntermediate(ca, current, previous.keyId, opts.migrateWithinMs, clock);
  return { event: "intermediate-rotated", at, current, previousKeyId: previous.keyId, migration };
}
