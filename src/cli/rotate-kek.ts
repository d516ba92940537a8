import { OperatorError } from "../core/errors.js";
import { Secret } from "../core/secret.js";
import { passphraseFrom } from "../config/load.js";
import type { FleetcaConfig } from "../config/schema.js";
import { readPassphraseFile } from "../signing/kek.js";
import { rotateKek, type RotationStep } from "../signing/kek-rotation.js";
import { openKeyStore } from "./data-dir.js";
import { recordOperatorEvent } from "./operator-event.js";
import { openCaStorage } from "./open-ca.js";
import { openPgCaStorage } from "../storage/postgres/pg-ca-storage.js";
import { openPgKek } from "../storage/postgres/pg-key-store.js";
import { rotatePgKek } from "../storage/postgres/pg-kek-rotation.js";

type PostgresStorage = Extract<FleetcaConfig["storage"], { type: "postgres" }>;

/**
 * Test hook: names a protocol step after which the process kills itself with SIGKILL, so the
 * crash-safety tests can stop a real rotation between any two steps. Inert unless set.
 */
export const CRASH_AFTER_ENV = "FLEETCA_TEST_KEK_ROTATION_CRASH_AFTER";

/**
 * `fleetca rotate kek [--new-passphrase-file F]`: every DEK re-wrapped under a new KEK derived
 * from the new passphrase; also the way out of development mode (SQLite only: PostgreSQL has no
 * development KEK). The current passphrase comes from the usual sources; the new one from a 0600
 * file or $FLEETCA_NEW_PASSPHRASE, never argv. Returns the lines to print (key names only:
 * nothing secret).
 */
export async function rotateKekCommand(config: FleetcaConfig, opts: { newPassphraseFile?: string }, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const next = newPassphraseFrom(opts, env);
  const current = passphraseFrom(config, env);
  if (current !== undefined && current.reveal().normalize("NFC") === next.reveal().normalize("NFC")) {
    throw new OperatorError("the new passphrase is the same as the current one; choose another");
  }
  return config.storage.type === "postgres" ? rotatePostgres(config, config.storage, current, next) : rotateSqlite(config, current, next, env);
}

async function rotateSqlite(config: FleetcaConfig, current: Secret | undefined, next: Secret, env: NodeJS.ProcessEnv): Promise<string[]> {
  const opened = openKeyStore(config.dataDir, current, { create: false });
  const crashAfter = env[CRASH_AFTER_ENV];
  const onStep = (step: RotationStep) => {
    if (step === crashAfter) process.kill(process.pid, "SIGKILL");
  };
  const r = rotateKek(config.dataDir, opened, next, onStep);
  const storage = await openCaStorage(config);
  try {
    await recordOperatorEvent(storage, "kek_rotated", {
      from: r.from.mode === "development" ? "development" : `version ${r.from.version}`,
      to_version: r.to.version,
      keys: r.rewrapped.length,
      dev_key_destroyed: r.devKeyDestroyed,
    });
  } finally {
    await storage.close();
  }
  const from = r.from.mode === "development" ? `development-mode KEK (kek.key)` : `KEK version ${r.from.version} (${r.from.id})`;
  return [
    ...r.rewrapped.map((name) => `re-wrapped ${name}`),
    `rotated ${from} to KEK version ${r.to.version} (${r.to.id}): ${r.rewrapped.length} key${r.rewrapped.length === 1 ? "" : "s"} re-wrapped, no CA key changed`,
    ...(r.devKeyDestroyed ? [`removed ${config.dataDir}/kek.key (overwritten, then unlinked); the CA now needs the passphrase`] : []),
    `the old ${r.from.mode === "development" ? "kek.key" : "passphrase"} no longer unlocks ${config.dataDir}: a running daemon keeps serving with the keys it holds; restart it with the new passphrase (FLEETCA_PASSPHRASE or passphraseFile)`,
  ];
}

/**
 * The PostgreSQL form: the rows of ca_keys re-wrapped and kek_params version N+1 inserted in one
 * transaction (pg-kek-rotation.ts), then the event appended to the issuance log in the database
 * (not in a dataDir's SQLite file, which a PostgreSQL deployment does not use).
 */
async function rotatePostgres(config: FleetcaConfig, storageConfig: PostgresStorage, current: Secret | undefined, next: Secret): Promise<string[]> {
  if (current === undefined) {
    throw new OperatorError("the CA keys in the database are protected by a passphrase: give the current one (FLEETCA_PASSPHRASE or passphraseFile) as well as the new one");
  }
  const { storage, store } = await openPgCaStorage({
    url: storageConfig.url,
    pool: storageConfig.pool,
    ...(storageConfig.passwordFile && { passwordFile: storageConfig.passwordFile }),
  });
  try {
    const { kek } = await openPgKek(store.pool, current, { create: false, now: new Date() });
    const r = await rotatePgKek(store.pool, kek, next, new Date());
    // After the COMMIT: a failure to log leaves the rotation done, and says so.
    try {
      await recordOperatorEvent(storage, "kek_rotated", { from: `version ${r.from.version}`, to_version: r.to.version, keys: r.rewrapped.length, dev_key_destroyed: false });
    } catch (e) {
      throw new OperatorError(`the KEK was rotated to version ${r.to.version} (${r.to.id}), but the kek_rotated event could not be added to the issuance log (${(e as Error).message}); the new passphrase opens the keys`, { cause: e });
    }
    return [
      ...r.rewrapped.map((name) => `re-wrapped ${name}`),
      `rotated KEK version ${r.from.version} (${r.from.id}) to KEK version ${r.to.version} (${r.to.id}) in ${storage.location}: ${r.rewrapped.length} key${r.rewrapped.length === 1 ? "" : "s"} re-wrapped in one transaction, no CA key changed`,
      `the old passphrase no longer unlocks the CA keys in the database: running replicas keep serving with the keys they hold (they cannot create keys); restart every replica with the new passphrase (FLEETCA_PASSPHRASE or passphraseFile)`,
    ];
  } finally {
    await storage.close();
  }
}

function newPassphraseFrom(opts: { newPassphraseFile?: string }, env: NodeJS.ProcessEnv): Secret {
  if (opts.newPassphraseFile !== undefined) return readPassphraseFile(opts.newPassphraseFile, "--new-passphrase-file");
  const fromEnv = env.FLEETCA_NEW_PASSPHRASE;
  if (fromEnv !== undefined && fromEnv !== "") return new Secret(fromEnv);
  throw new OperatorError("no new passphrase: give --new-passphrase-file F (mode 0600) or set FLEETCA_NEW_PASSPHRASE");
}
