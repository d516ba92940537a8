import { CaError } from "../core/errors.js";
import { normaliseSerial } from "../core/serial.js";
import type { CertificateLookup, CertificateRecord } from "../storage/ports.js";
import type { AuthenticatedClient } from "./client-authentication.js";

/**
 * GET /v1/certs/:serial: an admin reads one inventory record. Anyone else is refused before the
 * lookup, so a non-admin cannot tell a known serial from an unknown one.
 */
export async function inspectCertificate(store: Pick<CertificateLookup, "getCertificate">, caller: AuthenticatedClient, serialText: string): Promise<CertificateRecord> {
  if (!caller.isAdmin) throw new CaError("forbidden", "only an admin certificate may read certificate records");
  const serial = normaliseSerial(serialText);
  if (!serial) throw new CaError("bad_request", "serial must be hex, as fleetca returned it");
  const record = await store.getCertificate(serial);
  if (!record) throw new CaError("not_found", `no certificate with serial ${serial}`);
  return record;
}
