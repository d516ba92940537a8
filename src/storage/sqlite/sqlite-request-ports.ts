import type { AuditFields, IntentFields } from "../../audit/audit-entry.js";
import type { RevocationReason } from "../../core/revocation-reason.js";
import type { SerialHex } from "../../core/serial.js";
import type {
  CertificateLookup,
  CertificateRecord,
  CertificateStatusLookup,
  CertificateStatusRecord,
  CommitOutcome,
  IdempotencyRecord,
  IdempotencyScope,
  IssuanceCommit,
  IssuanceStore,
  IssuerRecord,
  RenewalInfoLookup,
  RenewalSubject,
  RevocationOutcome,
  RevocationStore,
} from "../ports.js";
import type { SqliteStore } from "./sqlite-store.js";
import { SqliteRenewalWindows } from "./sqlite-renewal-windows.js";

/**
 * The request-path ports (ports.ts: the RA, client authentication, revocation, OCSP, renewal
 * info) over SQLite. They are asynchronous so that an asynchronous driver (PostgreSQL, issue 17)
 * can implement them; better-sqlite3 is synchronous, so each method here runs the SqliteStore's
 * own synchronous method at once, inside the call, and returns its result as a resolved promise.
 * The read therefore happens exactly when it did before the ports became asynchronous (no
 * reordering against other reads or commits); only the caller's continuation moves to a
 * microtask. A throw of the store becomes a rejection.
 *
 * SqliteStore keeps its synchronous methods: its transactions, the CLI, the writer thread and
 * many tests call them directly. Each method is a plain `async` delegation (one promise per call,
 * no closure), as certificateStatus runs for every OCSP answer that is not served from memory.
 */
export class SqliteRequestPorts implements IssuanceStore, CertificateStatusLookup, CertificateLookup, RevocationStore, RenewalInfoLookup {
  readonly #store: SqliteStore;
  /** Made on the first renewal-info read: its statements need the renewal_windows table (migration v7). */
  #windows: SqliteRenewalWindows | undefined;

  constructor(store: SqliteStore, windows?: SqliteRenewalWindows) {
    this.#store = store;
    this.#windows = windows;
  }

  // --- IssuanceStore ---

  async isTokenUsed(tokenId: string): Promise<boolean> {
    return this.#store.isTokenUsed(tokenId);
  }

  async findIdempotency(scope: IdempotencyScope, key: string, now: Date): Promise<IdempotencyRecord | null> {
    return this.#store.findIdempotency(scope, key, now);
  }

  /** Also CertificateLookup's and RevocationStore's. */
  async getCertificate(serial: SerialHex): Promise<CertificateRecord | null> {
    return this.#store.getCertificate(serial);
  }

  commitIssuance(c: IssuanceCommit): Promise<CommitOutcome> {
    return this.#store.commitIssuance(c);
  }

  recordIntent(intent: IntentFields, at: Date): Promise<"committed" | "serial_collision"> {
    return this.#store.recordIntent(intent, at);
  }

  recordAudit(fields: AuditFields, at: Date): Promise<void> {
    return this.#store.recordAudit(fields, at);
  }

  // --- CertificateStatusLookup (OCSP) ---

  async certificateStatus(serial: SerialHex): Promise<CertificateStatusRecord | null> {
    return this.#store.certificateStatus(serial);
  }

  // --- CertificateLookup (client authentication) ---

  async listIssuers(): Promise<IssuerRecord[]> {
    return this.#store.listIssuers();
  }

  // --- RevocationStore ---

  async revokeCertificate(serial: SerialHex, revokedAt: Date, reason: RevocationReason): Promise<RevocationOutcome> {
    return this.#store.revokeCertificate(serial, revokedAt, reason);
  }

  // --- RenewalInfoLookup ---

  async renewalSubject(serial: SerialHex): Promise<RenewalSubject | null> {
    this.#windows ??= new SqliteRenewalWindows(this.#store.db);
    return this.#windows.renewalSubject(serial);
  }
}
