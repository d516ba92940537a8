import type {
  CertificateRecord,
  CrossCertificateRecord,
  InventoryQuery,
  InventoryStore,
  InventorySummary,
  IssuerChange,
  IssuerChangeOutcome,
  IssuerLifecycleStore,
  IssuerRecord,
  IssuerStore,
} from "../ports.js";
import { SqliteCrossCertificates } from "./sqlite-cross-certificates.js";
import { SqliteIssuerLifecycle } from "./sqlite-issuer-lifecycle.js";
import { SqliteRenewalWindows } from "./sqlite-renewal-windows.js";
import { inventorySummary } from "./sqlite-status.js";
import type { SqliteStore } from "./sqlite-store.js";

/**
 * The issuer and inventory ports (ports.ts: IssuerStore, IssuerLifecycleStore, InventoryStore)
 * over SQLite, for the daemon and its workers (LiveIssuers' issuer poll, /roots.pem). As in
 * sqlite-request-ports.ts, each method runs the synchronous store's own method at once, inside the
 * call, and returns its result as a resolved promise: the read happens exactly when it did before
 * the ports became asynchronous; a throw becomes a rejection.
 *
 * The operator's issuer changes (changeIssuers, addRootWithCross) run their statements inside
 * one better-sqlite3 transaction, which cannot span an await: the whole change happens within
 * the call, as before the commands went through the ports.
 */
export class SqliteInventoryPorts implements IssuerStore, IssuerLifecycleStore, InventoryStore {
  readonly #store: SqliteStore;
  readonly #lifecycle: SqliteIssuerLifecycle;

  constructor(store: SqliteStore) {
    this.#store = store;
    this.#lifecycle = new SqliteIssuerLifecycle(store.db);
  }

  // --- IssuerStore ---

  async listIssuers(): Promise<IssuerRecord[]> {
    return this.#store.listIssuers();
  }

  async addIssuer(r: IssuerRecord): Promise<void> {
    this.#store.addIssuer(r);
  }

  async addIssuers(rs: readonly IssuerRecord[]): Promise<void> {
    this.#store.db.transaction(() => {
      for (const r of rs) this.#store.addIssuer(r);
    })();
  }

  // --- IssuerLifecycleStore ---

  async activateIntermediate(keyId: string, at: Date): Promise<boolean> {
    return this.#lifecycle.activateIntermediate(keyId, at);
  }

  async revokeIssuer(keyId: string, at: Date, reason: number): Promise<boolean> {
    return this.#lifecycle.revokeIssuer(keyId, at, reason);
  }

  async lastCertificateExpiry(issuerKeyId: string): Promise<Date | null> {
    return this.#lifecycle.lastCertificateExpiry(issuerKeyId);
  }

  async countLiveCertificates(issuerKeyId: string, now: Date): Promise<number> {
    return this.#lifecycle.countLiveCertificates(issuerKeyId, now);
  }

  async changeIssuers(change: IssuerChange, at: Date): Promise<IssuerChangeOutcome> {
    const windows = new SqliteRenewalWindows(this.#store.db);
    // A refusal throws out of the transaction (rolling back what it did), then becomes an outcome.
    class Refused extends Error {
      constructor(readonly outcome: "revoke_refused" | "activate_refused") {
        super(outcome);
      }
    }
    try {
      return this.#store.db.transaction((): IssuerChangeOutcome => {
        if (change.revoke && !this.#lifecycle.revokeIssuer(change.revoke.keyId, at, change.revoke.reason)) throw new Refused("revoke_refused");
        if (change.activate !== undefined && !this.#lifecycle.activateIntermediate(change.activate, at)) throw new Refused("activate_refused");
        const { matched } = windows.recordOverride(change.renewalOverride, change.renewalOverride.createdAt);
        return { outcome: "changed", matched };
      })();
    } catch (e) {
      if (e instanceof Refused) return { outcome: e.outcome };
      throw e;
    }
  }

  async addRootWithCross(root: IssuerRecord, cross: CrossCertificateRecord): Promise<void> {
    const crossCerts = new SqliteCrossCertificates(this.#store.db);
    this.#store.db.transaction(() => {
      this.#store.addIssuer(root);
      crossCerts.add(cross);
    })();
  }

  async retireRoot(keyId: string): Promise<boolean> {
    return new SqliteCrossCertificates(this.#store.db).retireRoot(keyId);
  }

  // --- InventoryStore ---

  async listCertificates(q: InventoryQuery): Promise<CertificateRecord[]> {
    return this.#store.listCertificates(q);
  }

  async inventorySummary(now: Date, internalProvisioners: readonly string[]): Promise<InventorySummary> {
    return inventorySummary(this.#store.db, now, internalProvisioners);
  }
}
