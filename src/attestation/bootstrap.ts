import { calculateJwkThumbprint, importJWK, jwtVerify, type JWK } from "jose";
import { createPublicKey, randomUUID } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { CaError, OperatorError } from "../core/errors.js";
import { SIGNATURE_SCHEMES } from "../core/key-type.js";
import { sansFromList, sansToList } from "../core/sans.js";
import { Secret } from "../core/secret.js";
import { signCompactJws } from "../signing/jws.js";
import type { Signer } from "../signing/signer.js";
import type { CaKeyStore } from "../signing/ca-key-store.js";
import type { ProvisionerKeyRecord, ProvisionerKeyStore } from "../storage/ports.js";
import { holdBackAdminSans, type AdminIssuance } from "./admin-sans.js";
import type { Authorization, AuthorizeContext, Provisioner } from "./provisioner.js";
import { peekToken } from "./routing.js";
import { tokenErrorFromJose } from "./token-errors.js";

/** Bootstrap keys are P-256: ES256 is the one algorithm these tokens may use. */
const BOOTSTRAP_KEY_TYPE = "ecdsa-p256" as const;
const BOOTSTRAP_ALG = SIGNATURE_SCHEMES[BOOTSTRAP_KEY_TYPE].jwsAlg;

export const bootstrapIssuer = (name: string) => `urn:fleetca:bootstrap:${name}`;
export const bootstrapKeyName = (name: string) => `provisioner-${name}`;

export interface BootstrapSettings {
  name: string;
  maxTokenTtlMs: number;
  leewayMs: number;
  /** Config `admins` and this provisioner's `mayIssueAdmin`; absent = no admin SANs configured. */
  admin?: AdminIssuance | undefined;
}

/**
 * The signed claim `fleetca token create --admin` sets. An admin SAN in a token without it is
 * refused, so a token minted for a host can never carry admin rights by a slip of `--san`, and a
 * token whose claims were not minted that way (even one signed with the provisioner key) fails.
 */
const ADMIN_CLAIM = "admin";

/**
 * One-time tokens minted by `fleetca token create`, signed by a provisioner key of the CA's own
 * (never a CA key). Claims: iss, sub, aud (the sign URL), iat, nbf, exp, jti, sans, and `admin: true`
 * when created with --admin.
 */
export class BootstrapProvisioner implements Provisioner {
  readonly type = "bootstrap" as const;
  readonly issuer: string;
  readonly name: string;

  private constructor(
    private readonly settings: BootstrapSettings,
    private readonly kid: string,
    private readonly key: CryptoKey | Uint8Array,
  ) {
    this.name = settings.name;
    this.issuer = bootstrapIssuer(settings.name);
  }

  static async fromRecord(settings: BootstrapSettings, record: ProvisionerKeyRecord): Promise<BootstrapProvisioner> {
    const key = await importJWK(record.publicJwk as JWK, BOOTSTRAP_ALG);
    return new BootstrapProvisioner(settings, record.kid, key);
  }

  async authorize(token: Secret, ctx: AuthorizeContext): Promise<Authorization> {
    const { header } = peekToken(token);
    if (header.alg !== BOOTSTRAP_ALG) throw CaError.unauthorized("alg_not_allowed");
    if (header.kid !== this.kid) throw CaError.unauthorized("unknown_kid");
    let payload;
    try {
      ({ payload } = await jwtVerify(token.reveal(), this.key, {
        algorithms: [BOOTSTRAP_ALG],
        issuer: this.issuer,
        audience: [...ctx.audiences],
        clockTolerance: Math.floor(this.settings.leewayMs / 1000),
        currentDate: ctx.now,
        requiredClaims: ["exp", "iat", "jti", "sub", "aud", "iss"],
      }));
    } catch (e) {
      throw tokenErrorFromJose(e);
    }
    const { exp, iat, jti, sub } = payload as { exp: number; iat: number; jti: unknown; sub: unknown };
    if (typeof jti !== "string" || jti.length === 0 || jti.length > 128) throw CaError.unauthorized("missing_claim", "jti");
    if (typeof sub !== "string" || sub.length === 0) throw CaError.unauthorized("missing_claim", "sub");
    // A token lives at most maxTokenTTL: a longer one was not minted by this provisioner's rules.
    if ((exp - iat) * 1000 > this.settings.maxTokenTtlMs + this.settings.leewayMs) {
      throw CaError.unauthorized("expired", "token lifetime exceeds the provisioner's maxTokenTTL");
    }
    const rawSans = (payload as { sans?: unknown }).sans;
    if (!Array.isArray(rawSans) || rawSans.length === 0 || !rawSans.every((s) => typeof s === "string")) {
      throw CaError.unauthorized("missing_claim", "sans");
    }
    let sans;
    try {
      sans = sansFromList(rawSans as string[]);
    } catch {
      throw CaError.unauthorized("malformed", "token sans");
    }
    // The whole list the token allows, not only what this CSR asks for: a token that lists an admin
    // SAN without the claim was not minted by `token create`'s rules.
    holdBackAdminSans(this.name, sans, this.settings.admin, (payload as Record<string, unknown>)[ADMIN_CLAIM] === true);
    return {
      provisioner: this.name,
      subject: sub,
      tokenId: `${this.name}:${jti}`,
      tokenExpiresAt: new Date(exp * 1000 + this.settings.leewayMs),
      policy: { kind: "listed", sans },
    };
  }
}

/**
 * Makes sure a bootstrap provisioner has its signing key (wrapped in keys/) and its public JWK
 * (in the database, so the daemon can verify without unwrapping anything).
 */
export async function ensureBootstrapKey(
  name: string,
  keys: CaKeyStore,
  store: ProvisionerKeyStore,
  clock: Clock,
): Promise<ProvisionerKeyRecord> {
  const existing = await store.getProvisionerKey(name);
  if (existing) return existing;
  const signer = (await keys.has(bootstrapKeyName(name))) ? await keys.load(bootstrapKeyName(name)) : await keys.generate(bootstrapKeyName(name), BOOTSTRAP_KEY_TYPE);
  const jwk = publicJwkOf(signer);
  const record: ProvisionerKeyRecord = { name, kid: await calculateJwkThumbprint(jwk as JWK), publicJwk: jwk, createdAt: clock.now() };
  await store.addProvisionerKey(record);
  return record;
}

function publicJwkOf(signer: Signer): Record<string, unknown> {
  const jwk = createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: "der", type: "spki" }).export({ format: "jwk" });
  return { ...jwk, alg: BOOTSTRAP_ALG, use: "sig" };
}

export interface TokenRequest {
  subject: string;
  sans: string[];
  ttlMs: number;
  audience: string;
  /** `--admin`: the operator means to list admin SANs (config `admins`). */
  admin?: boolean | undefined;
}

/** Mints a one-time bootstrap token (what `fleetca token create` prints). */
export async function createBootstrapToken(
  settings: BootstrapSettings,
  keys: CaKeyStore,
  store: ProvisionerKeyStore,
  req: TokenRequest,
  clock: Clock,
): Promise<Secret> {
  if (req.ttlMs > settings.maxTokenTtlMs) {
    throw new OperatorError(`--ttl exceeds provisioner ${settings.name}'s maxTokenTTL`);
  }
  if (req.sans.length === 0) throw new OperatorError("at least one --san is required");
  if (!req.subject) throw new OperatorError("--sub is required");
  let sans: string[];
  try {
    sans = sansToList(sansFromList(req.sans));
  } catch (e) {
    throw new OperatorError((e as Error).message);
  }
  checkAdminRequest(settings, sans, req.admin === true);
  const record = await store.getProvisionerKey(settings.name);
  if (!record) throw new OperatorError(`provisioner ${settings.name} has no key yet: run "fleetca init" or start the daemon once`);
  const signer = await keys.load(bootstrapKeyName(settings.name));
  const now = Math.floor(clock.now().getTime() / 1000);
  const token = await signCompactJws(
    signer,
    { typ: "JWT", kid: record.kid },
    {
      iss: bootstrapIssuer(settings.name),
      sub: req.subject,
      aud: req.audience,
      iat: now,
      nbf: now,
      exp: now + Math.ceil(req.ttlMs / 1000),
      jti: randomUUID(),
      sans,
      ...(req.admin === true && { [ADMIN_CLAIM]: true }),
    },
  );
  return new Secret(token);
}

/**
 * `token create` refuses, with one line, an admin SAN without --admin, --admin without an admin
 * SAN (a typo in the SAN would otherwise mint a plain token the operator believes is an admin
 * one), --admin where the provisioner may not issue admin SANs, and an admin SAN that config
 * `admins` does not honour through this provisioner (the certificate would grant nothing).
 */
function checkAdminRequest(settings: BootstrapSettings, sans: string[], admin: boolean): void {
  const adminSans = settings.admin ? settings.admin.sans.among(sansFromList(sans)) : [];
  if (!admin) {
    if (adminSans.length > 0) throw new OperatorError(`--san ${adminSans[0]} is an admin SAN (config admins): add --admin to create an admin token`);
    return;
  }
  if (!settings.admin || adminSans.length === 0) throw new OperatorError("--admin: none of the --san values is an admin SAN listed in config admins");
  if (!settings.admin.mayIssue) throw new OperatorError(`--admin: provisioner ${settings.name} may not issue admin SANs (mayIssueAdmin: false)`);
  const elsewhere = adminSans.find((s) => !settings.admin!.sans.grantsThrough(settings.name, s));
  if (elsewhere !== undefined) {
    throw new OperatorError(`--admin: config admins does not honour ${elsewhere} through provisioner ${settings.name} (check admins, or use --provisioner)`);
  }
}
