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
 * Routes a token to the provisioner whose issuer equals its `iss` exactly (step-ca
 * authorize.go), never by guessing from other unverified claims; the provisioner then verifies.
 * When several provisioners share an issuer (two projects on one cloud), the request names one.
 */
export class ProvisionerRegistry {
  readonly #byIssuer = new Map<string, Provisioner[]>();

  constructor(provisioners: readonly Provisioner[]) {
    for (const p of provisioners) this.#byIssuer.set(p.issuer, [...(this.#byIssuer.get(p.issuer) ?? []), p]);
  }

  async authorize(token: Secret, ctx: AuthorizeContext, provisionerName?: string): Promise<Authorization> {
    const { header, claims } = peekToken(token);
    if (typeof header.alg !== "string" || header.alg.toLowerCase() === "none") throw CaError.unauthorized("alg_not_allowed");
    if (typeof claims.iss !== "string") throw CaError.unauthorized("missing_claim", "iss");
    const candidates = this.#byIssuer.get(claims.iss) ?? [];
    const chosen = provisionerName === undefined ? candidates : candidates.filter((p) => p.name === provisionerName);
    if (chosen.length === 0) throw CaError.unauthorized("wrong_issuer");
    if (chosen.length > 1) {
      throw new CaError("bad_request", `provisioners ${chosen.map((p) => p.name).join(", ")} share this issuer: name one with "provisioner"`);
    }
    return chosen[0]!.authorize(token, ctx);
  }
}
