import { decodeJwt, decodeProtectedHeader, type JWTPayload, type ProtectedHeaderParameters } from "jose";
import { CaError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import type { Authorization, AuthorizeContext, Provisioner } from "./provisioner.js";

/** Compact JWS: three base64url parts, no larger than any sane identity token. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const MAX_TOKEN_LENGTH = 8192;

export interface UnverifiedToken {
  header: ProtectedHeaderParameters;
  claims: JWTPayload;
}

/** Reads header and claims without trusting them; only for routing and early refusal. */
export function peekToken(token: Secret): UnverifiedToken {
  const t = token.reveal();
  if (t.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(t)) throw CaError.unauthorized("malformed");
  try {
    return { header: decodeProtectedHeader(t), claims: decodeJwt(t) };
  } catch {
    throw CaError.unauthorized("malformed");
  }
}

/**
 * Routes a token to exactly the provisioner whose issuer equals its `iss` (step-ca
 * authorize.go): never by guessing from other unverified claims. The provisioner then verifies.
 */
export class ProvisionerRegistry {
  readonly #byIssuer = new Map<string, Provisioner>();

  constructor(provisioners: readonly Provisioner[]) {
    for (const p of provisioners) {
      if (this.#byIssuer.has(p.issuer)) throw new Error(`two provisioners share issuer ${p.issuer}`);
      this.#byIssuer.set(p.issuer, p);
    }
  }

  async authorize(token: Secret, ctx: AuthorizeContext): Promise<Authorization> {
    const { header, claims } = peekToken(token);
    if (typeof header.alg !== "string" || header.alg.toLowerCase() === "none") throw CaError.unauthorized("alg_not_allowed");
    if (typeof claims.iss !== "string") throw CaError.unauthorized("missing_claim", "iss");
    const p = this.#byIssuer.get(claims.iss);
    if (!p) throw CaError.unauthorized("wrong_issuer");
    return p.authorize(token, ctx);
  }
}
