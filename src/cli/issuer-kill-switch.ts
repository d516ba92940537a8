import type { Clock } from "../core/clock.js";
import { OperatorError } from "../core/errors.js";
import type { RenewalWindow } from "../core/renewal-window.js";
import type { FleetcaConfig } from "../config/schema.js";
import { currentIntermediate } from "../issuance/issuer.js";
import { MIN_PULL_MS, renewalPull } from "../registration/renewal-override.js";
import { signRootCrl } from "../revocation/crl/root-crl.js";
import type { OpenedCa } from "./data-dir.js";
import { prepareIntermediate, unwrapRootOf, type PreparedIntermediate } from "./intermediate-rotation.js";

/**
 * What the kill switch did, for the operator's output and for the audit log (which records it as
 * an "issuer revoked" event).
 */
export interface IssuerRevocationResult {
  event: "issuer-revoked";
  at: Date;
  revokedKeyId: string;
  /** RFC 5280 §5.3.1 CRLReason code, as listed on the root's CRL. */
  reason: number;
  /** The root CRL that now lists it. */
  rootCrl: { rootKeyId: string; crlNumber: number; entries: number; nextUpdate: Date };
  /** The fresh intermediate activated in its place; null when another, unrevoked one was already issuing. */
  replacement: PreparedIntermediate | null;
  /** Its certificates that were valid and unexpired: every one of them is due for renewal now. */
  affected: number;
  window: RenewalWindow;
}

/**
 * `fleetca revoke-issuer KEYID --reason R`: the kill switch for a compromised (or withdrawn)
 * intermediate.
 * 1. A fresh intermediate is prepared (when the revoked one is issuing) from the same root.
 * 2. One transaction: the intermediate is marked revoked, the fresh one activated, and every
 *    certificate of the revoked one gets the renewal window [now, now + 1 min] (RFC 9773
 *    renewalInfo: cert-agents renew at once, into the fresh intermediate). A running daemon stops
 *    issuing from it and refuses its client certificates within a second or two.
 * 3. The root's CRL is re-signed listing it (RFC 5280 §5: relying parties that check the whole
 *    chain, nginx `ssl_crl` or OpenSSL `-crl_check_all`, refuse its leaves from then on); the
 *    daemon serves the new root CRL on its next issuer poll.
 * The revoked intermediate's leaves are not revoked one by one: their chain is no longer valid
 * (RFC 5280 §6.3), and their holders renew through the fresh intermediate.
 */
export async function revokeIssuer(ca: OpenedCa, config: FleetcaConfig, clock: Clock, keyIdText: string, reason: number): Promise<IssuerRevocationResult> {
  const keyId = keyIdText.trim().toLowerCase().replace(/:/g, "");
  const issuers = await ca.storage.issuers.listIssuers();
  const target = issuers.find((i) => i.keyId === keyId);
  if (!target) {
    const known = issuers.filter((i) => i.role === "intermediate").map((i) => i.keyId);
    throw new OperatorError(`no intermediate with key id "${keyIdText.slice(0, 80)}" (known: ${known.join(", ")})`);
  }
  if (target.role !== "intermediate") throw new OperatorError(`${keyId} is a root; revoke-issuer revokes an intermediate on its root's CRL`);
  if (target.revokedAt !== null) throw new OperatorError(`intermediate ${keyId} was already revoked at ${target.revokedAt.toISOString()}`);
  const now = clock.now();
  const root = await unwrapRootOf(ca, keyId, now);
  let issuing: string | null;
  try {
    issuing = currentIntermediate(issuers, now).keyId;
  } catch {
    issuing = null;
  }
  const replacement = issuing === keyId || issuing === null ? await prepareIntermediate(ca, config, clock, root) : null;

  const at = clock.now();
  const pulled = renewalPull({ kind: "issuer", value: keyId }, MIN_PULL_MS, clock);
  const change = await ca.storage.issuerLifecycle.changeIssuers(
    { revoke: { keyId, reason }, ...(replacement && { activate: replacement.keyId }), renewalOverride: pulled.override },
    at,
  );
  if (change.outcome === "revoke_refused") throw new OperatorError(`intermediate ${keyId} was revoked meanwhile`);
  if (change.outcome === "activate_refused") throw new OperatorError(`the fresh intermediate ${replacement?.keyId} could not be activated`);
  const affected = change.matched;
  const window = pulled.window;
  const crl = await signRootCrl(root, await ca.storage.issuers.listIssuers(), ca.storage.crls, clock, config.crl.rootValidity);
  return {
    event: "issuer-revoked",
    at,
    revokedKeyId: keyId,
    reason,
    rootCrl: { rootKeyId: root.keyIdHex, crlNumber: crl.crlNumber, entries: crl.entries, nextUpdate: crl.nextUpdate },
    replacement,
    affected,
    window,
  };
}
