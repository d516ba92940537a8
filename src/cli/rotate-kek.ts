import { OperatorError } from "../core/errors.js";
import { Secret } from "../core/secret.js";
import { passphraseFrom } from "../config/load.js";
import type { FleetcaConfig } from "../config/schema.js";
import { readPassphraseFile } from "../signing/kek.js";
import { rotateKek, type RotationStep } from "../signing/kek-rotation.js";
import { openKeyStore } from "./data-dir.js";
import { recordOperatorEventInDataDir } from "./operator-event.js";

/**
 * Test hook: names a protocol step after which the process kills itself with SIGKILL, so the
 * crash-safety tests can stop a real rotation between any two steps. Inert unless set.
 */
export const CRASH_AFTER_ENV = "FLEETCA_TEST_KEK_ROTATION_CRASH_AFTER";

/**
 * `fleetca rotate kek [--new-passphrase-file F]`: every DEK re-wrapped under a new KEK derived
 * from the new passphrase; also the way out of development mode. The current passphrase comes
 * from the usual sources; the new one from a 0600 file or $FLEETCA_NEW_PASSPHRASE, never argv.
 * Returns the lines to print (key names only: nothing secret).
 */
export function rotateKekCommand(config: FleetcaConfig, opts: { newPassphraseFile?: string }, env: NodeJS.ProcessEnv = process.env): string[] {
  const next = newPassphraseFrom(opts, env);
  const current = passphraseFrom(config, env);
  if (current !== undefined && current.reveal().normalize("NFC") === next.reveal().normalize("NFC")) {
    throw new OperatorError("the new passphrase is the same as the current one; choose another");
  }
  const opened = openKeyStore(config.dataDir, current, { create: false });
  const crashAfter = env[CRASH_AFTER_ENV];
  const onStep = (step: RotationStep) => {
    if (step === crashAfter) process.kill(process.pid, "SIGKILL");
  };
  const r = rotateKek(config.dataDir, opened, next, onStep);
  recordOperatorEventInDataDir(config.dataDir, "kek_rotated", {
    from: r.from.mode === "development" ? "development" : `version ${r.from.version}`,
    to_version: r.to.version,
    keys: r.rewrapped.length,
    dev_key_destroyed: r.devKeyDestroyed,
  });
  const from = r.from.mode === "development" ? `development-mode KEK (kek.key)` : `KEK version ${r.from.version} (${r.from.id})`;
  return [
    ...r.rewrapped.map((name) => `re-wrapped ${name}`),
    `rotated ${from} to KEK version ${r.to.version} (${r.to.id}): ${r.rewrapped.length} key${r.rewrapped.length === 1 ? "" : "s"} re-wrapped, no CA key changed`,
    ...(r.devKeyDestroyed ? [`removed ${config.dataDir}/kek.key (overwritten, then unlinked); the CA now needs the passphrase`] : []),
    `the old ${r.from.mode === "development" ? "kek.key" : "passphrase"} no longer unlocks ${config.dataDir}: a running daemon keeps serving with the keys it holds; restart it with the new passphrase (FLEETCA_PASSPHRASE or passphraseFile)`,
  ];
}

function newPassphraseFrom(opts: { newPassphraseFile?: string }, env: NodeJS.ProcessEnv): Secret {
  if (opts.newPassphraseFile !== undefined) return readPassphraseFile(opts.newPassphraseFile, "--new-passphrase-file");
  const fromEnv = env.FLEETCA_NEW_PASSPHRASE;
  if (fromEnv !== undefined && fromEnv !== "") return new Secret(fromEnv);
  throw new OperatorError("no new passphrase: give --new-passphrase-file F (mode 0600) or set FLEETCA_NEW_PASSPHRASE");
}
