import type { JWTPayload } from "jose";
import { CaError } from "../core/errors.js";
import type { Sans } from "../core/sans.js";
import { claimAt, claimText } from "./claims.js";
import { PlatformProvisioner, type PlatformTokenRules } from "./platform-token.js";
import { renderSans, type SanTemplates } from "./san-template.js";

export interface JwtProvisionerSettings extends PlatformTokenRules {
  /** Claim path → the value (or one of the values) it must have, e.g. a project id. */
  requiredClaims: Record<string, string | string[]>;
  sans: SanTemplates;
  /** Claim path naming the platform instance (e.g. google.compute_engine.instance_id). */
  instanceClaim?: string | undefined;
}

/**
 * An external platform's identity JWTs (cloud instance identity tokens, OIDC ID tokens): verified
 * against the platform's JWKS, then its claims decide the SANs through the configured templates.
 */
export class JwtProvisioner extends PlatformProvisioner<JwtProvisionerSettings> {
  readonly type = "jwt" as const;

  protected override instanceClaim(): string | undefined {
    return this.settings.instanceClaim;
  }

  protected sansFor(payload: JWTPayload): Sans {
    for (const [path, allowed] of Object.entries(this.settings.requiredClaims)) {
      const value = claimText(claimAt(payload, path));
      const ok = value !== undefined && (Array.isArray(allowed) ? allowed.includes(value) : allowed === value);
      if (!ok) throw new CaError("forbidden", `claim "${path}" does not have a value this provisioner accepts`);
    }
    return renderSans(this.settings.sans, payload);
  }
}
