import type { Secret } from "../core/secret.js";
import type { Sans } from "../core/sans.js";

/**
 * What a verified token lets its bearer have. A discriminated union so later provisioners
 * (jwt templates, kubernetes) add their own kinds without loosening the type.
 */
export type SanPolicy =
  | {
      /** A bootstrap token lists its SANs; the CSR may ask for any non-empty subset (none asked = all). */
      kind: "listed";
      sans: Sans;
    }
  | {
      /** Rendered from the verified claims of a platform token through the provisioner's templates. */
      kind: "templated";
      sans: Sans;
    };

export interface Authorization {
  provisioner: string;
  subject: string;
  /** Provisioner-scoped id that may be used once: `${provisioner}:${jti}`. */
  tokenId: string;
  /** The token cannot verify after this; its used-id row may be pruned then. */
  tokenExpiresAt: Date;
  policy: SanPolicy;
  /**
   * The platform instance the token attests (a jwt provisioner's `instanceClaim`): certificates
   * are bound to it, and a new attestation of the same instance revokes its older lineages.
   */
  instance?: string;
}

export interface AuthorizeContext {
  now: Date;
  /** Every audience this CA answers to (its sign URLs). */
  audiences: readonly string[];
}

/** One identity method (step-ca authority/provisioner/): verify a token, return a typed policy. */
export interface Provisioner {
  readonly name: string;
  readonly type: "bootstrap" | "jwt" | "kubernetes";
  /** The exact `iss` that routes a token to this provisioner. */
  readonly issuer: string;
  authorize(token: Secret, ctx: AuthorizeContext): Promise<Authorization>;
}
