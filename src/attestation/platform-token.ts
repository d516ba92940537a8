import { createHash } from "node:crypto";
import { errors, jwtVerify, type JWTPayload } from "jose";
import { CaError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import type { JwksSource } from "./jwks.js";
import type { Sans } from "../core/sans.js";
import { holdBackAdminSans, type AdminIssuance } from "./admin-sans.js";
import type { Authorization, AuthorizeContext, Provisioner } from "./provisioner.js";
import { peekToken } from "./routing.js";
import { tokenErrorFromJose } from "./token-errors.js";
import { claimAt, claimText } from "./claims.js";

/** Asymmetric JWS algorithms a platform token may use. HMAC and "none" are never on the list. */
export const PLATFORM_ALGORITHMS = ["ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"] as const;
export type PlatformAlgorithm = (typeof PLATFORM_ALGORITHMS)[number];

/**
 * How a platform marks a token single-use. "required": every token carries a jti. "absent": the
 * platform never sets one (GCE identity tokens), so a token counts as used once per (iss, sub, iat).
 */
export type JtiMode = "required" | "absent";

export interface PlatformTokenRules {
  provisioner: string;
  issuer: string;
  audiences: string[];
  algorithms: PlatformAlgorithm[];
  leewayMs: number;
  /** Refuse tokens whose iat is older than this (a token minted long ago and replayed later). */
  maxTokenAgeMs?: number | undefined;
  jti: JtiMode;
  /** Config `admins` and this provisioner's `mayIssueAdmin`; absent = no admin SANs configured. */
  admin?: AdminIssuance | undefined;
}

export interface VerifiedPlatformToken {
  payload: JWTPayload;
  subject: string;
  tokenId: string;
  expiresAt: Date;
}

/**
 * Verifies an external platform's identity JWT: algorithm allowlist checked before any key is
 * chosen, key by kid from the JWKS, then signature, iss, aud, exp/nbf/iat with leeway, token age,
 * and the single-use id. Unverified claims are never used for anything but routing.
 */
export async function verifyPlatformToken(
  token: Secret,
  rules: PlatformTokenRules,
  jwks: JwksSource,
  ctx: AuthorizeContext,
): Promise<VerifiedPlatformToken> {
  const { header } = peekToken(token);
  if (typeof header.alg !== "string" || !(rules.algorithms as string[]).includes(header.alg)) {
    throw CaError.unauthorized("alg_not_allowed");
  }
  if (typeof header.kid !== "string" || header.kid.length === 0) throw CaError.unauthorized("unknown_kid", "token has no kid");
  const keys = await jwks.keysFor(header.kid);
  if (!keys.keys.keys.some((k) => k.kid === header.kid)) throw CaError.unauthorized("unknown_kid");
  const leewaySec = Math.floor(rules.leewayMs / 1000);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token.reveal(), keys.resolver, {
      algorithms: rules.algorithms,
      issuer: rules.issuer,
      audience: rules.audiences,
      clockTolerance: leewaySec,
      currentDate: ctx.now,
      requiredClaims: ["exp", "iat", "iss", "aud", "sub"],
    }));
  } catch (e) {
    if (e instanceof errors.JWKSNoMatchingKey) throw CaError.unauthorized("unknown_kid");
    throw tokenErrorFromJose(e);
  }
  const now = ctx.now.getTime();
  const iat = payload.iat! * 1000;
  if (iat > now + rules.leewayMs) throw CaError.unauthorized("not_yet_valid", "iat is in the future");
  if (rules.maxTokenAgeMs !== undefined && now - iat > rules.maxTokenAgeMs + rules.leewayMs) {
    throw CaError.unauthorized("expired", "token is older than the provisioner's maxTokenAge");
  }
  const subject = payload.sub!;
  return { payload, subject, tokenId: singleUseId(rules, payload, token), expiresAt: new Date(payload.exp! * 1000 + rules.leewayMs) };
}

function singleUseId(rules: PlatformTokenRules, payload: JWTPayload, token: Secret): string {
  if (typeof payload.jti === "string" && payload.jti.length > 0 && payload.jti.length <= 256) {
    return `${rules.provisioner}:${payload.jti}`;
  }
  if (rules.jti === "required") throw CaError.unauthorized("missing_claim", "jti");
  // Without a jti, the token is identified by its signed claims: a replay carries the same
  // (iss, sub, iat) and everything else, so it collides. Keying on (iss, sub, iat) alone would
  // refuse two instances that share a service account (GCE's default: same sub) and mint in the
  // same second. The decoded payload bytes are hashed, not the base64url text or the signature,
  // so neither a re-encoding nor a malleated ECDSA signature makes a replay look new.
  const signedClaims = Buffer.from(token.reveal().split(".")[1]!, "base64url");
  const h = createHash("sha256").update(signedClaims).digest("hex");
  return `${rules.provisioner}:claims:${h.slice(0, 48)}`;
}

function instanceOf(path: string | undefined, payload: JWTPayload): { instance?: string } {
  if (path === undefined) return {};
  const value = claimText(claimAt(payload, path));
  // Without it the certificate could not be bound to an instance, and a later attestation of the
  // same instance could not retire it: refused like any other missing claim.
  if (value === undefined || value.length === 0 || value.length > 256) throw CaError.unauthorized("missing_claim", path);
  return { instance: value };
}

/**
 * What jwt and kubernetes provisioners share: verify the platform token, then let the concrete
 * provisioner turn its verified claims into SANs (refusing, with 403, claims it does not accept).
 */
export abstract class PlatformProvisioner<S extends PlatformTokenRules> implements Provisioner {
  abstract readonly type: "jwt" | "kubernetes";
  readonly name: string;
  readonly issuer: string;

  constructor(
    protected readonly settings: S,
    private readonly jwks: JwksSource,
  ) {
    this.name = settings.provisioner;
    this.issuer = settings.issuer;
  }

  async authorize(token: Secret, ctx: AuthorizeContext): Promise<Authorization> {
    const t = await verifyPlatformToken(token, this.settings, this.jwks, ctx);
    const sans = this.sansFor(t.payload);
    // Config load refuses templates that could render an admin SAN without mayIssueAdmin
    // (san-template.ts templateCanRender); this holds even where that analysis could not see.
    holdBackAdminSans(this.name, sans, this.settings.admin);
    return {
      provisioner: this.name,
      subject: t.subject,
      tokenId: t.tokenId,
      tokenExpiresAt: t.expiresAt,
      policy: { kind: "templated", sans },
      ...instanceOf(this.instanceClaim(), t.payload),
    };
  }

  /** The claim naming the attested instance, for provisioners that bind certificates to one. */
  protected instanceClaim(): string | undefined {
    return undefined;
  }

  /** The SANs these verified claims may hold; throws CaError when the claims are not acceptable. */
  protected abstract sansFor(payload: JWTPayload): Sans;
}
