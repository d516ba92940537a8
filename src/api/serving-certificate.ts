import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { sansFromList } from "../core/sans.js";
import type { RegistrationAuthority } from "../registration/registration-authority.js";
import { generateEphemeralSigner } from "../signing/soft-keystore.js";
import { toPem } from "../x509/pem.js";

export interface TlsCredentials {
  key: string;
  cert: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * The API listener's own certificate, issued by the intermediate at start-up and renewed at two
 * thirds of its life (the same point the cert-agent uses), swapped into the live server without
 * a restart. Its key lives only in memory.
 */
export class ServingCertificate {
  #current: TlsCredentials | null = null;
  #renewing: Promise<boolean> | null = null;

  constructor(
    private readonly ra: RegistrationAuthority,
    private readonly names: string[],
    private readonly lifetimeMs: number,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly install: (c: TlsCredentials) => void,
    /** This replica's name among several on one database (its certificates supersede only its own); null for one. */
    private readonly instance: string | null = null,
  ) {}

  get current(): TlsCredentials {
    if (!this.#current) throw new Error("serving certificate not issued yet");
    return this.#current;
  }

  async issue(): Promise<TlsCredentials> {
    const signer = await generateEphemeralSigner("ecdsa-p256");
    const record = await this.ra.issueInternal({
      spki: signer.publicKeySpki,
      subjectKey: { kind: "ec", curve: "P-256" },
      sans: sansFromList(this.names),
      ttlMs: this.lifetimeMs,
      purpose: "fleetca-api",
      instance: this.instance,
    });
    const creds: TlsCredentials = {
      key: signer.privateKeyPem(),
      cert: toPem(record.der, "CERTIFICATE") + this.ra.chainPem(),
      serial: record.serial,
      notBefore: record.notBefore,
      notAfter: record.notAfter,
    };
    this.#current = creds;
    this.install(creds);
    return creds;
  }

  renewalDue(now: Date = this.clock.now()): boolean {
    const c = this.#current;
    if (!c) return true;
    const life = c.notAfter.getTime() - c.notBefore.getTime();
    return now.getTime() >= c.notBefore.getTime() + (life * 2) / 3;
  }

  /** Renews when due; concurrent calls share one renewal. Failures are logged and retried next tick. */
  async renewIfDue(): Promise<boolean> {
    if (!this.renewalDue()) return false;
    this.#renewing ??= this.issue()
      .then((c) => {
        this.log.info({ serial: c.serial, notAfter: c.notAfter }, "api serving certificate renewed");
        return true;
      })
      .catch((err: unknown) => {
        this.log.error({ err }, "api serving certificate renewal failed; will retry");
        return false;
      })
      .finally(() => {
        this.#renewing = null;
      });
    return this.#renewing;
  }
}
