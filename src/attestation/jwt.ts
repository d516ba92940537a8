import type { Secret } from "../core/secret.js";
import { CaError } from "../core/errors.js";
import type { JwksSource } from "./jwks.js";
import type { Authorization, AuthorizeContext, Provisioner } from "./provisioner.js";
import { claimAt, claimText } from "./claims.js";
import { verifyPlatformToken, type PlatformTokenRules } from "./platform-token.js";
import { renderSans, type SanTemplates } from "./san-template.js";

export interface JwtProvisionerSettings extends PlatformTokenRules {
  /** Claim path → the value (or one of the values) it must have, e.g. a project id. */
  requiredClaims: Record<string, string | string[]>;
  sans: SanTemplates;
}

/**
 * An external platform's identity JWTs (cloud instance identity tokens, OIDC ID tokens): verified
 * against the platform's JWKS, then its claims decide the SANs through the configured templates.
 */
export class JwtProvisioner implements Provisioner {
  readonly type = "jwt" as const;
  readonly name: string;
  readonly issuer: string;

  constructor(
    private readonly settings: JwtProvisionerSettings,
    private readonly jwks: JwksSource,
  ) {
    this.name = settings.provisioner;
    this.issuer = settings.issuer;
  }

  async authorize(token: Secret, ctx: AuthorizeContext): Promise<Authorization> {
    const t = await verifyPlatformToken(token, this.settings, this.jwks, ctx);
    for (const [path, allowed] of Object.entries(this.settings.requiredClaims)) {
      const value = claimText(claimAt(t.payload, path));
      const ok = value !== undefined && (Array.isArray(allowed) ? allowed.includes(value) : allowed === value);
      if (!ok) throw new CaError("forbidden", `claim "${path}" does not have a value this provisioner accepts`);
    }
    return {
      provisioner: this.name,
      subject: t.subject,
      tokenId: t.tokenId,
      tokenExpiresAt: t.expiresAt,
      policy: { kind: "templated", sans: renderSans(this.settings.sans, t.payload) },
    };
  }
}
