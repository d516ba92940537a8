import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import { crlReasonName, parseRevocationReason, type RevocationReason } from "../core/revocation-reason.js";
import { normaliseSerial, type SerialHex } from "../core/serial.js";
import type { AuthenticatedClient } from "../registration/client-authentication.js";
import type { RevocationStore } from "../storage/ports.js";

export interface Revocation {
  serial: SerialHex;
  /** When it was first revoked: a repeated revoke answers with the original time. */
  revokedAt: Date;
  /** RFC 5280 §5.3.1 code the certificate was revoked with (the first revocation's). */
  reason: number | null;
  alreadyRevoked: boolean;
}

/**
 * Revokes certificates: for a client over mTLS (POST /v1/revoke) when it holds the certificate or
 * is an admin, and for the operator at the database (`fleetca revoke`). Revocation is final and
 * idempotent; the store flips the status atomically so a race has one winner. CRL and OCSP will
 * read the same rows (later issue).
 */
export class RevokeService {
  constructor(
    private readonly store: RevocationStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** Called after a revocation commits, so publishers re-sign at once rather than at the next poll. */
    private readonly onRevoked: () => void = () => {},
  ) {}

  /**
   * POST /v1/revoke `{"serial", "reason"?}`. A caller who neither holds the serial nor is an admin
   * gets 403 whether or not it exists, so serials cannot be probed; admins learn 404.
   */
  async revokeAsClient(caller: AuthenticatedClient, body: unknown): Promise<Revocation> {
    const { serial, reason } = parseRevokeBody(body);
    const holder = caller.holds(serial);
    if (!holder && !caller.isAdmin) throw new CaError("forbidden", "only the certificate's holder or an admin may revoke it");
    return this.#revoke(serial, reason, holder ? "holder" : `admin ${caller.certificate.serial}`);
  }

  /** `fleetca revoke`: whoever can write the database needs no further proof. */
  async revokeAsOperator(serialText: string, reason: RevocationReason): Promise<Revocation> {
    const serial = normaliseSerial(serialText);
    if (!serial) throw new CaError("bad_request", `"${serialText.slice(0, 80)}" is not a serial number (hex, as fleetca list prints it)`);
    return this.#revoke(serial, reason, "operator");
  }

  async #revoke(serial: SerialHex, reason: RevocationReason, by: string): Promise<Revocation> {
    const r = await this.store.revokeCertificate(serial, this.clock.now(), reason);
    switch (r.outcome) {
      case "not_found":
        throw new CaError("not_found", `no certificate with serial ${serial}`);
      case "already_revoked":
        this.log.info({ serial, by, revokedAt: r.revokedAt }, "certificate was already revoked");
        return { serial, revokedAt: r.revokedAt, reason: r.reason, alreadyRevoked: true };
      case "revoked":
        this.log.info({ serial, by, reason: crlReasonName(r.reason) }, "certificate revoked");
        this.onRevoked();
        return { serial, revokedAt: r.revokedAt, reason: r.reason, alreadyRevoked: false };
    }
  }
}

function parseRevokeBody(body: unknown): { serial: SerialHex; reason: RevocationReason } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new CaError("bad_request", "expected a JSON object body");
  const { serial, reason } = body as { serial?: unknown; reason?: unknown };
  if (typeof serial !== "string") throw new CaError("bad_request", "serial (a hex string) is required");
  const normalised = normaliseSerial(serial);
  if (!normalised) throw new CaError("bad_request", "serial must be hex, as fleetca returned it");
  return { serial: normalised, reason: parseRevocationReason(reason) };
}
