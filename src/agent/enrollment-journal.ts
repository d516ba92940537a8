import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fsyncDir, writeFileAtomic } from "../core/atomic-file.js";

/**
 * What an enrollment is about to send, written down before it is sent: the key, the CSR and the
 * Idempotency-Key, bound to the token (by its hash; the token itself is never written). An agent
 * killed after the CA committed the certificate but before the set was published starts again,
 * finds this, and sends the same request with the same key: the CA answers with the certificate
 * it stored (SPEC: idempotent retry within 24 h) instead of `401 replayed` for the spent token,
 * so no certificate is orphaned and the agent does not strand itself.
 *
 * DIR/..enrollment.json, 0600 (it holds a private key, as key.pem does), written atomically and
 * durably; removed once the set is published.
 */
export interface PendingEnrollment {
  tokenSha256: string;
  keyPem: string;
  csrPem: string;
  idempotencyKey: string;
  createdAt: string;
}

const JOURNAL = "..enrollment.json";

function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** The pending enrollment for this very token, if one was recorded and not yet published. */
export function pendingEnrollment(dir: string, token: string): PendingEnrollment | null {
  let p: PendingEnrollment;
  try {
    p = JSON.parse(readFileSync(join(dir, JOURNAL), "utf8")) as PendingEnrollment;
  } catch {
    return null;
  }
  // Another token (the file was replaced: a platform token rotated, an operator gave a new one) starts afresh.
  if (p.tokenSha256 !== tokenHash(token) || typeof p.keyPem !== "string" || typeof p.csrPem !== "string" || typeof p.idempotencyKey !== "string") return null;
  return p;
}

export function recordEnrollment(dir: string, token: string, req: { keyPem: string; csrPem: string }, now: Date): PendingEnrollment {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const p: PendingEnrollment = { tokenSha256: tokenHash(token), keyPem: req.keyPem, csrPem: req.csrPem, idempotencyKey: randomUUID(), createdAt: now.toISOString() };
  writeFileAtomic(join(dir, JOURNAL), JSON.stringify(p), 0o600);
  return p;
}

export function clearEnrollment(dir: string): void {
  rmSync(join(dir, JOURNAL), { force: true });
  fsyncDir(dir);
}

/**
 * The same for a renewal (issue 15): the CA marks the renewed certificate superseded, so a
 * renewal whose answer was lost (the agent killed, the connection dropped after the CA committed)
 * can only be retried with the key it sent: the CA then answers with the successor it stored.
 * A new key would be refused (`superseded`) and the host stranded until its certificate expired.
 * Bound to the serial being renewed; DIR/..renewal.json, 0600; removed once the set is published
 * or the CA refused the request (4xx).
 */
export interface PendingRenewal {
  renewing: string;
  keyPem: string;
  csrPem: string;
  createdAt: string;
}

const RENEWAL_JOURNAL = "..renewal.json";

export function pendingRenewal(dir: string, serial: string): PendingRenewal | null {
  let p: PendingRenewal;
  try {
    p = JSON.parse(readFileSync(join(dir, RENEWAL_JOURNAL), "utf8")) as PendingRenewal;
  } catch {
    return null;
  }
  if (p.renewing !== serial || typeof p.keyPem !== "string" || typeof p.csrPem !== "string") return null;
  return p;
}

export function recordRenewal(dir: string, serial: string, req: { keyPem: string; csrPem: string }, now: Date): PendingRenewal {
  const p: PendingRenewal = { renewing: serial, keyPem: req.keyPem, csrPem: req.csrPem, createdAt: now.toISOString() };
  writeFileAtomic(join(dir, RENEWAL_JOURNAL), JSON.stringify(p), 0o600);
  return p;
}

export function clearRenewal(dir: string): void {
  rmSync(join(dir, RENEWAL_JOURNAL), { force: true });
  fsyncDir(dir);
}
