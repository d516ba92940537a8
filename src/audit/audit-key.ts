import type { Clock } from "../core/clock.js";
import type { Signer } from "../signing/signer.js";
import type { CaKeyStore } from "../signing/ca-key-store.js";
import type { AuditLogStore } from "../storage/ports.js";

/** The audit key's rows. */
export type AuditKeyStore = Pick<AuditLogStore, "auditKeys" | "addAuditKey">;

/**
 * The dedicated key that signs the issuance log's tree heads: its own key, never a CA key (a
 * tree head is not a certificate or a CRL, and a monitor can be given this key alone), wrapped at
 * rest like the CA keys. Always ECDSA P-256 with SHA-256, what every verifier has. Made by
 * `fleetca init`, or at the first start of a CA made before the log existed.
 */
export async function loadOrCreateAuditKey(keys: CaKeyStore, store: AuditKeyStore, clock: Clock): Promise<{ name: string; signer: Signer; created: boolean }> {
  const latest = (await store.auditKeys()).at(-1);
  if (latest) {
    const signer = await keys.load(latest.keyName);
    if (!Buffer.from(signer.publicKeySpki).equals(latest.keySpki)) throw new Error(`audit key ${latest.keyName} does not match its recorded public key`);
    return { name: latest.keyName, signer, created: false };
  }
  const name = `audit-${clock.now().toISOString().replace(/[-:]/g, "").slice(0, 15).toLowerCase()}`;
  const signer = await keys.generate(name, "ecdsa-p256");
  await store.addAuditKey({ keyName: name, keySpki: Buffer.from(signer.publicKeySpki), createdAt: clock.now().getTime() });
  return { name, signer, created: true };
}
