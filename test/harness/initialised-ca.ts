/**
 * A CA made by the real `fleetca init`, on either adapter (issue 17: "every storage test runs
 * against both adapters"), for tests that drive the CA's own modules in-process (LiveIssuers, the
 * RA, rotateIntermediate) or start daemons on it. SQLite: the workspace's data dir. PostgreSQL: a
 * throwaway cluster (harness/postgres.ts) started once per describe block, a database of its own
 * for the workspace. Both get a passphrase, as PostgreSQL requires one (pg-key-store.ts), so the
 * keys are unwrapped the same way on both.
 *
 *   describe.each(STORAGE_BACKENDS)("… on %s", (name) => {
 *     const ca = useInitialisedCa(name);
 *     it("…", async () => { const opened = await ca.open(); … ca.ws … });
 *   });
 */
import { afterAll, beforeAll, expect } from "vitest";
import type { OpenedCa } from "../../src/cli/data-dir.js";
import { openCa } from "../../src/cli/open-ca.js";
import { loadConfig, passphraseFrom } from "../../src/config/load.js";
import type { FleetcaConfig } from "../../src/config/schema.js";
import { CaWorkspace } from "./fleetca-process.js";
import { startPostgres, type TestPostgres } from "./postgres.js";
import type { StorageBackendName } from "./storage-backends.js";

const PASSPHRASE = "initialised-ca test passphrase";

export interface InitialisedCa {
  /** The workspace, initialised; from the describe's beforeAll hooks on (the PostgreSQL URL is known only then). */
  readonly ws: CaWorkspace;
  config(): FleetcaConfig;
  /**
   * The CA opened as the daemon opens it (openCa: every port from the adapter the config names).
   * Each call is another process's open (its own SQLite connection, its own PostgreSQL pool);
   * all are closed after the describe block.
   */
  open(): Promise<OpenedCa>;
}

/**
 * Registers, in the describe block it is called from, the hooks that make the CA (a cluster
 * started and `fleetca init` run before its tests) and take it down after them.
 * `listen`: more of the workspace's `listen:` settings (e.g. "apiWorkers: 2").
 */
export function useInitialisedCa(backend: StorageBackendName, opts: { listen?: string } = {}): InitialisedCa {
  let server: TestPostgres | undefined;
  let ws: CaWorkspace | undefined;
  const opened: OpenedCa[] = [];

  beforeAll(async () => {
    let extraConfig = "";
    if (backend === "PostgreSQL") {
      server = await startPostgres();
      extraConfig = `storage: { type: postgres, url: "${await server.createDatabase("ca")}" }\n`;
    }
    ws = new CaWorkspace({ passphrase: PASSPHRASE, extraConfig, ...(opts.listen && { listen: opts.listen }) });
    const init = await ws.cli(["init"]);
    expect(init.code, init.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    for (const ca of opened.splice(0).reverse()) await ca.storage.close();
    ws?.remove();
    await server?.stop();
  });

  const workspace = (): CaWorkspace => {
    if (!ws) throw new Error("the CA is made in beforeAll: use it from a test or a later hook");
    return ws;
  };
  const config = (): FleetcaConfig => loadConfig(workspace().configPath, workspace().env).config;
  return {
    get ws() {
      return workspace();
    },
    config,
    async open() {
      const c = config();
      const ca = await openCa(c, passphraseFrom(c, workspace().env), { create: false });
      opened.push(ca);
      // The config, not the harness, picks the adapter: a workspace that fell back to SQLite would claim coverage it does not have.
      expect(ca.storage.kind).toBe(backend === "PostgreSQL" ? "postgres" : "sqlite");
      return ca;
    },
  };
}
