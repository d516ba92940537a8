import type { CertificateRecord, InventoryQuery, InventoryStore, IssuerLifecycleStore, IssuerRecord, IssuerStore } from "../ports.js";
import { SqliteIssuerLifecycle } from "./sqlite-issuer-lifecycle.js";
import type { SqliteStore } from "./sqlite-store.js";

/**
 * The issuer and inventory ports (ports.ts: IssuerStore, IssuerLifecycleStore, InventoryStore)
 * over SQLite, for the daemon and its workers (LiveIssuers' issuer poll, /roots.pem). As in
 * sqlite-request-ports.ts, each method runs the synchronous store's own method at once, inside the
 * call, and returns its result as a resolved promise: the read happens exactly when it did before
 * the ports became asynchronous; a throw becomes a rejection.
 *
 * SqliteStore and SqliteIssuerLifecycle keep their synchronous methods: `fleetca rotate
 * intermediate` and `fleetca revoke-issuer` call them inside one better-sqlite3 transaction
 * (which cannot span an await), and `fleetca list` and `status` read them directly.
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

  // --- InventoryStore ---

  async listCertificates(q: InventoryQuery): Promise<CertificateRecord[]> {
    return this.#store.listCertificates(q);
  }
}
