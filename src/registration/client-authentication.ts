import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import type { AdminIdentity } from "../attestation/admin-sans.js";
import type { CertificateLookup, CertificateRecord } from "../storage/ports.js";
import { describeCertificate, parseCertificateDer, type CertificateInfo } from "../x509/certificate-info.js";

/**
 * A TLS client proven to hold one of this CA's live certificates. Only ClientAuthenticator makes
 * these; the ES private field makes the class nominal, so a bare CertificateRecord (say, one read
 * from the database by serial) cannot be passed where an authenticated caller is required.
 */
export class AuthenticatedClient {
  readonly #nominal = true;
  constructor(
    /** The stored record of the presented certificate (status valid, unexpired when checked). */
    readonly certificate: CertificateRecord,
    /** It came through the provisioner a config `admins` entry names, with that entry's SAN. */
    readonly isAdmin: boolean,
    /**
     * The presented certificate as ClientAuthenticator decoded it (byte-identical to
     * `certificate.der`), so a renewal reads its key from here instead of parsing it again.
     */
    readonly presented: CertificateInfo,
  ) {}

  /** True when the caller is the holder of `serial` (presented that very certificate). */
  holds(serial: string): boolean {
    return this.certificate.serial === serial;
  }
}

/**
 * Decides whether a presented client certificate is a live certificate of this CA. This is RA
 * policy, not TLS plumbing, so it lives here rather than in api/: the TLS handshake has already
 * proved the client holds the key (CertificateVerify); node's own `authorized` flag is not used
 * because it checks the chain against the real clock (fleetca injects a Clock) and knows nothing
 * of revocation or of which certificates this CA actually handed out.
 *
 * The test is the inventory itself: the presented DER must be byte-identical to the stored row
 * for its serial (so a look-alike with a copied serial, or a cert from another fleetca, fails),
 * issued by one of our intermediates that its root has not revoked, not revoked itself, and inside
 * its validity per the Clock.
 */
export class ClientAuthenticator {
  /** Our intermediates' subjects by key id, and whether its root revoked it. Cleared by issuersChanged(). */
  readonly #issuerSubjects = new Map<string, { subject: Uint8Array; revoked: boolean }>();
  /**
   * Counts issuersChanged() calls: a read of the issuers table that was in flight across one
   * (the store's reads are asynchronous) may predate the change, so its answer is used for that
   * handshake only and not cached, or a revoked intermediate could stay cached as unrevoked.
   */
  #issuersGeneration = 0;

  constructor(
    private readonly store: CertificateLookup,
    private readonly clock: Clock,
    /** Config `admins`, normalised: a SAN and the provisioner it must have come through. */
    private readonly admins: readonly AdminIdentity[],
    /** Provisioners whose expired certificates may still renew (config renewAfterExpiry). */
    private readonly renewsAfterExpiry: (provisioner: string) => boolean = () => false,
  ) {}

  /**
   * The issuers table changed (a rotation, or `fleetca revoke-issuer`): read it again on the next
   * handshake, so a client certificate of a revoked intermediate is refused from then on.
   */
  issuersChanged(): void {
    this.#issuersGeneration++;
    this.#issuerSubjects.clear();
  }

  /**
   * `purpose` "renew": an expired certificate passes when its provisioner allows renewal after
   * expiry (the RA's authorizeRenew still bounds it by maxRenewalAge); for anything else an
   * expired certificate proves nothing.
   */
  async authenticate(presented: Uint8Array | null, purpose: "renew" | "other" = "other"): Promise<AuthenticatedClient> {
    if (!presented || presented.length === 0) {
      throw CaError.unauthorized("missing_client_certificate", "present a certificate issued by this CA (mTLS)");
    }
    let info: CertificateInfo;
    try {
      info = describeCertificate(presented);
    } catch {
      throw CaError.unauthorized("unknown_certificate");
    }
    const record = await this.store.getCertificate(info.serial);
    // The intermediate is looked up only for a stored, byte-identical record, as before; from the
    // cache (no read) except after a rotation or a revoke-issuer.
    const intermediate =
      record && Buffer.from(record.der).equals(Buffer.from(presented))
        ? (this.#issuerSubjects.get(record.issuerKeyId) ?? (await this.#readIntermediate(record.issuerKeyId)))
        : null;
    if (!record || !intermediate || !issuedBy(intermediate.subject, record, info)) {
      throw CaError.unauthorized("unknown_certificate", "not a certificate issued by this CA");
    }
    if (record.status === "revoked") throw CaError.unauthorized("revoked");
    // A certificate of an intermediate its root revoked (`fleetca revoke-issuer`) fails RFC 5280
    // path validation (§6.3) everywhere else, but here it still proves what renewal needs: the
    // holder has the key of a certificate this CA stored, byte for byte (a leaf forged with the
    // leaked intermediate key is not in the inventory). So it may renew (the kill switch pulls its
    // renewal window to now, and the fleet moves to the fresh intermediate without new tokens),
    // but it confers nothing else: never admin rights.
    const issuerRevoked = intermediate.revoked;
    const now = this.clock.now().getTime();
    // RFC 5280 §4.1.2.5: the validity period includes both notBefore and notAfter.
    const expired = now > record.notAfter.getTime();
    if (expired && !(purpose === "renew" && this.renewsAfterExpiry(record.provisioner))) {
      throw CaError.unauthorized("expired", "an expired certificate cannot renew; request a new one with a fresh token");
    }
    if (now < record.notBefore.getTime()) throw CaError.unauthorized("not_yet_valid");
    return new AuthenticatedClient(record, !issuerRevoked && !expired && this.#isAdmin(record), info);
  }

  /**
   * One of our intermediates (current or older: their certs stay renewable, which is how a fleet
   * moves to a new intermediate), with whether its root revoked it, read from the issuers table
   * and cached; null for an unknown one. Callers look in #issuerSubjects first.
   */
  async #readIntermediate(keyId: string): Promise<{ subject: Uint8Array; revoked: boolean } | null> {
    const generation = this.#issuersGeneration;
    const issuer = (await this.store.listIssuers()).find((i) => i.role === "intermediate" && i.keyId === keyId);
    if (!issuer) return null;
    const entry = { subject: parseCertificateDer(issuer.der).info.subjectDer, revoked: issuer.revokedAt !== null };
    if (generation === this.#issuersGeneration) this.#issuerSubjects.set(keyId, entry);
    return entry;
  }

  /**
   * An admin is an identity, not a string in a SAN: the stored record (never the presented
   * certificate's contents) must say it came through the entry's provisioner, and carry its SAN.
   * The same SAN through any other provisioner grants nothing, so a provisioner whose template
   * happens to render it (or a certificate issued before the SAN became an admin one) cannot
   * confer admin rights.
   */
  #isAdmin(record: CertificateRecord): boolean {
    const sans = [...record.sans.dns, ...record.sans.ip, ...record.sans.uri];
    return this.admins.some((a) => a.provisioner === record.provisioner && sans.includes(a.san));
  }
}

/** The presented certificate names our intermediate (`subject`) as its issuer, by key id and by name. */
function issuedBy(subject: Uint8Array, record: CertificateRecord, info: CertificateInfo): boolean {
  if (!info.authorityKeyId) return false;
  return Buffer.from(info.authorityKeyId).toString("hex") === record.issuerKeyId && Buffer.from(info.issuerDer).equals(Buffer.from(subject));
}
