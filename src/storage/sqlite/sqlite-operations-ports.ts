import type { Housekeeping, HealthProbe, ProvisionerKeyRecord, ProvisionerKeyStore } from "../ports.js";
import type { SqliteStore } from "./sqlite-store.js";

/**
 * The operational ports (ports.ts: provisioner keys for bootstrap tokens and `fleetca
 * provisioner`, the daemon's housekeeping, the /healthz database probe) over SQLite. They are
 * asynchronous so an asynchronous driver (PostgreSQL, issue 17) can implement them; as in
 * sqlite-request-ports.ts, each method runs the SqliteStore's own synchronous method at once,
 * inside the call, and returns its result as a settled promise (a throw becomes a rejection).
 *
 * SqliteStore keeps its synchronous methods: the CLI's one-shot commands and tests call them.
 */
export class SqliteOperationsPorts implements ProvisionerKeyStore, Housekeeping, HealthProbe {
  readonly #store: SqliteStore;

  constructor(store: SqliteStore) {
    this.#store = store;
  }

  // --- ProvisionerKeyStore ---

  async getProvisionerKey(name: string): Promise<ProvisionerKeyRecord | null> {
    return this.#store.getProvisionerKey(name);
  }

  async addProvisionerKey(r: ProvisionerKeyRecord): Promise<void> {
    this.#store.addProvisionerKey(r);
  }

  // --- Housekeeping ---

  async pruneExpired(now: Date): Promise<number> {
    return this.#store.pruneExpired(now);
  }

  // --- HealthProbe ---

  /** SqliteStore.ping already answers false for a database that throws. */
  async ping(): Promise<boolean> {
    return this.#store.ping();
  }
}
