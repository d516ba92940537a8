import { CaError } from "../core/errors.js";
import { sansToList, type Sans } from "../core/sans.js";

/**
 * One entry of config `admins`: a SAN, and the provisioner a certificate must have come through
 * for that SAN to make its holder an admin. A SAN alone is not an identity: any provisioner whose
 * template can render it (a jwt `spiffe://example.org/{sub}`) could otherwise mint admin rights.
 */
export interface AdminIdentity {
  provisioner: string;
  /** Normalised as core/sans.ts classifySan leaves it. */
  san: string;
}

/**
 * The SANs config `admins` names, which no provisioner may put in a certificate unless its
 * config says so (`mayIssueAdmin`; for bootstrap, also a token created with `--admin`). Held back
 * whichever provisioner the admin entry names: a look-alike admin certificate that fleetca would
 * not honour is still an admin name to any other relying party that authorises on it.
 *
 * Compared case-insensitively: URI schemes and hosts are case-insensitive (RFC 3986 §6.2.2.1),
 * DNS names too (RFC 4343), so a case variant is held back as well.
 */
export class AdminSans {
  readonly #folded: Set<string>;

  constructor(readonly identities: readonly AdminIdentity[]) {
    this.#folded = new Set(identities.map((a) => a.san.toLowerCase()));
  }

  /** The admin SANs among `sans`, as given there. */
  among(sans: Sans): string[] {
    return sansToList(sans).filter((s) => this.#folded.has(s.toLowerCase()));
  }

  /** True when `san` is an admin SAN through `provisioner` (what `token create --admin` aims at). */
  grantsThrough(provisioner: string, san: string): boolean {
    return this.identities.some((a) => a.provisioner === provisioner && a.san === san);
  }
}

/** What a provisioner's config says about admin SANs, with the admin SANs it must hold back. */
export interface AdminIssuance {
  sans: AdminSans;
  /** Config `mayIssueAdmin` of this provisioner. */
  mayIssue: boolean;
}

/**
 * Refuses (403) a token whose SANs include an admin SAN the provisioner may not issue. Called by
 * each provisioner on the SANs its token allows, so the SAN policy handed to the RA never holds
 * one: nothing is recorded and the token is not spent.
 * `tokenSaysAdmin` is the bootstrap token's signed `admin` claim (undefined for platform tokens,
 * where the provisioner's config alone decides).
 */
export function holdBackAdminSans(provisioner: string, sans: Sans, admin: AdminIssuance | undefined, tokenSaysAdmin?: boolean): void {
  if (!admin) return;
  const found = admin.sans.among(sans);
  if (found.length === 0) return;
  if (!admin.mayIssue) {
    throw new CaError("forbidden", `admin_san: provisioner ${provisioner} may not issue the admin SAN ${found[0]} (it needs mayIssueAdmin: true)`);
  }
  if (tokenSaysAdmin === false) {
    throw new CaError("forbidden", `admin_san: the token lists the admin SAN ${found[0]} but was not created with --admin`);
  }
}
