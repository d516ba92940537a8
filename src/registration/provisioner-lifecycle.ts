import { CaError } from "../core/errors.js";
import type { CertificateRecord } from "../storage/ports.js";
import { AdminSans, holdBackAdminSans, type AdminIdentity } from "../attestation/admin-sans.js";

/** One provisioner's say over its certificates' lives (config: provisioners[].defaultTTL …). */
export interface LifecycleRules {
  defaultTtlMs: number;
  maxTtlMs: number;
  allowRenewal: boolean;
  maxRenewalAgeMs: number;
  renewAfterExpiry: boolean;
  /** Config mayIssueAdmin: a renewal re-issues the same SANs, so it is held to the same rule. */
  mayIssueAdmin: boolean;
}

/** Why a renewal is refused (the start of the 403's message, and the issuance log's reason). */
export type RenewalRefusal = "provisioner_removed" | "renewal_not_allowed" | "renewal_age_exceeded" | "superseded";

/**
 * The provisioners' lifecycle decisions, in one place (issue 15): which lifetime a certificate
 * gets, and whether a certificate may renew. Renewal used to ignore the provisioner: a
 * certificate from a provisioner removed from the config renewed forever, and any certificate
 * could renew itself indefinitely. Now the provisioner that attested the chain must still exist
 * and allow renewal, and the chain may run at most `maxRenewalAge` from that attestation
 * (step-ca's provisioner claims; SPIRE's agents re-attest the same way).
 */
export class ProvisionerLifecycles {
  constructor(
    private readonly rules: ReadonlyMap<string, LifecycleRules>,
    private readonly admins: AdminSans = new AdminSans([]),
  ) {}

  /** The lifetime for a request through `provisioner`: its default, and never above its maximum. */
  ttlFor(provisioner: string, requestedMs: number | undefined): number {
    const r = this.rules.get(provisioner);
    if (!r) throw new CaError("forbidden", `provisioner_removed: provisioner "${provisioner}" is not configured`);
    return Math.min(requestedMs ?? r.defaultTtlMs, r.maxTtlMs);
  }

  /**
   * May `record` renew now? Throws 403 `forbidden` with the reason first in the message. Expiry
   * is decided here too for provisioners that allow renewal after it (ClientAuthenticator lets
   * an expired certificate through only to this check).
   */
  authorizeRenew(record: CertificateRecord, now: Date): LifecycleRules {
    const r = this.rules.get(record.provisioner);
    if (!r) {
      throw refuse("provisioner_removed", `provisioner "${record.provisioner}" that issued this certificate is no longer configured; attest again with a token`);
    }
    if (!r.allowRenewal) throw refuse("renewal_not_allowed", `provisioner "${record.provisioner}" does not allow renewal; attest again with a token`);
    // An admin SAN its provisioner may no longer issue (mayIssueAdmin turned off, the SAN made an
    // admin since) is not issued again by renewing.
    holdBackAdminSans(record.provisioner, record.sans, { sans: this.admins, mayIssue: r.mayIssueAdmin });
    if (record.supersededBy) throw refuse("superseded", `certificate ${record.serial} was already renewed (by ${record.supersededBy}); renew that one`);
    const attestedAt = (record.attestedAt ?? record.createdAt).getTime();
    if (now.getTime() - attestedAt > r.maxRenewalAgeMs) {
      throw refuse("renewal_age_exceeded", `this chain of renewals started ${new Date(attestedAt).toISOString()}, longer ago than the provisioner's maxRenewalAge; attest again with a token`);
    }
    // RFC 5280 §4.1.2.5: the validity period includes notAfter itself.
    if (now.getTime() > record.notAfter.getTime() && !r.renewAfterExpiry) {
      throw CaError.unauthorized("expired", "an expired certificate cannot renew; request a new one with a fresh token");
    }
    return r;
  }

  /** May an expired certificate of this provisioner present itself for renewal at all? */
  renewsAfterExpiry(provisioner: string): boolean {
    return this.rules.get(provisioner)?.renewAfterExpiry === true;
  }
}

function refuse(reason: RenewalRefusal, detail: string): CaError {
  return new CaError("forbidden", `${reason}: ${detail}`);
}

/** The rules from config: a provisioner's own values, else the CA-wide `issuance` ones. */
export function lifecyclesFromConfig(
  provisioners: ReadonlyArray<{ name: string; defaultTTL?: number | undefined; maxTTL?: number | undefined; allowRenewal: boolean; maxRenewalAge: number; renewAfterExpiry: boolean; mayIssueAdmin: boolean }>,
  issuance: { defaultTTL: number; maxTTL: number },
  admins: readonly AdminIdentity[] = [],
): ProvisionerLifecycles {
  return new ProvisionerLifecycles(
    new Map(
      provisioners.map((p) => {
        const maxTtlMs = Math.min(p.maxTTL ?? issuance.maxTTL, issuance.maxTTL);
        return [p.name, { defaultTtlMs: Math.min(p.defaultTTL ?? issuance.defaultTTL, maxTtlMs), maxTtlMs, allowRenewal: p.allowRenewal, maxRenewalAgeMs: p.maxRenewalAge, renewAfterExpiry: p.renewAfterExpiry, mayIssueAdmin: p.mayIssueAdmin }];
      }),
    ),
    new AdminSans(admins),
  );
}
