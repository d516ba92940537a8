import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { OperatorError } from "../core/errors.js";
import type { Secret } from "../core/secret.js";
import { fsyncDir, writeNewFileDurably } from "../core/atomic-file.js";
import { DEV_KEK_FILE, KEK_PARAMS_FILE, newPassphraseKek, type Kek } from "./kek.js";
import { KEY_FILE_SUFFIX, SoftKeyStore } from "./soft-keystore.js";

/*
 * KEK rotation protocol (`fleetca rotate kek`). A kill -9 at any instant leaves a dataDir that
 * opens with exactly one of the two KEKs, never neither and never a mix:
 *
 *   1. lock      `kek-rotation.lock` (O_EXCL, holds our pid; a dead holder's lock is taken over).
 *   2. stage     `kek-rotation.staging/keys/NAME.key.json` for every key (DEK re-wrapped by the new
 *                KEK; sealed private key unchanged) and `kek-rotation.staging/kek.json` (new salt,
 *                version + 1); every file fsynced, then both directories. Each staged key is then
 *                loaded back with the new KEK, so nothing unreadable is ever committed.
 *   3. commit    rename(`kek-rotation.staging` -> `kek-rotation.committed`), fsync dataDir. This
 *                one rename is the commit point. Before it the live files are untouched (old KEK);
 *                after it the rotation is decided and is only ever rolled forward.
 *   4. roll      rename each staged key over `keys/NAME.key.json`, fsync keys/; rename the staged
 *                kek.json over `kek.json`, fsync dataDir; destroy `kek.key` if the CA was in
 *                development mode; remove the empty committed directory, fsync dataDir.
 *
 * Recovery (`completeInterruptedRotation`, run by every open of the data directory before the KEK
 * is read): a committed directory is rolled forward (step 4 is idempotent: a file already moved is
 * simply absent from it). A staging directory is left alone: the live files are still the old
 * KEK's, and only the next `rotate kek` (holding the lock) deletes it, so a process starting while
 * a rotation stages cannot delete files under it.
 *
 * Keys made while a rotation runs (a daemon generating one) would be missed by it: before the
 * commit the key set is compared with the staged one, and SoftKeyStore.generate refuses to wrap
 * with a KEK that is no longer the one on disk.
 */

export const ROTATION_STAGING_DIR = "kek-rotation.staging";
export const ROTATION_COMMITTED_DIR = "kek-rotation.committed";
export const ROTATION_LOCK_FILE = "kek-rotation.lock";
const KEYS_DIR = "keys";

/** The protocol's steps, for a test to stop the process between them (the CLI's crash hook). */
export type RotationStep = "staged" | "committed" | "key-moved" | "params-moved";

export interface KekRotationResult {
  rewrapped: string[];
  from: { id: string; version: number; mode: Kek["mode"] };
  to: { id: string; version: number };
  /** The development-mode `kek.key` was overwritten and unlinked. */
  devKeyDestroyed: boolean;
}

/**
 * Re-wraps every key in `dataDir/keys` under a new passphrase KEK (version current + 1) and
 * installs it. `current` must be the KEK the files name now; `onStep` runs after each step.
 */
export function rotateKek(
  dataDir: string,
  current: { kek: Kek; keys: SoftKeyStore },
  newPassphrase: Secret,
  onStep: (step: RotationStep) => void = () => {},
): KekRotationResult {
  const releaseLock = takeLock(dataDir);
  try {
    completeInterruptedRotation(dataDir);
    const staging = join(dataDir, ROTATION_STAGING_DIR);
    // An earlier rotation died before its commit: its staged files were never live.
    rmSync(staging, { recursive: true, force: true });

    const names = current.keys.names();
    if (names.length === 0) throw new OperatorError(`no keys in ${join(dataDir, KEYS_DIR)}: nothing to rotate`);
    // Every key must unwrap with the current KEK before anything is written: a rotation must
    // not carry a broken or foreign file over to the new KEK.
    for (const name of names) current.keys.load(name);

    const next = newPassphraseKek(newPassphrase, current.kek.version + 1, null);
    const stagedKeys = join(staging, KEYS_DIR);
    mkdirSync(stagedKeys, { recursive: true, mode: 0o700 });
    for (const name of names) {
      writeNewFileDurably(join(stagedKeys, `${name}${KEY_FILE_SUFFIX}`), current.keys.rewrapped(name, next.kek), 0o600);
    }
    writeNewFileDurably(join(staging, KEK_PARAMS_FILE), next.paramsFile, 0o600);
    fsyncDir(stagedKeys);
    fsyncDir(staging);
    const staged = new SoftKeyStore(stagedKeys, next.kek);
    for (const name of names) staged.load(name);
    const now = current.keys.names();
    if (now.join("\n") !== names.join("\n")) {
      rmSync(staging, { recursive: true, force: true });
      throw new OperatorError(`keys were added to ${join(dataDir, KEYS_DIR)} during the rotation; nothing changed: run "fleetca rotate kek" again`);
    }
    onStep("staged");

    renameSync(staging, join(dataDir, ROTATION_COMMITTED_DIR));
    fsyncDir(dataDir);
    onStep("committed");

    completeInterruptedRotation(dataDir, onStep);
    // Whoever finished the roll-forward (this process or one opening the data dir meanwhile), the dev key is gone.
    const devKeyDestroyed = current.kek.mode === "development" && !existsSync(join(dataDir, DEV_KEK_FILE));
    // The installed files, read back with the new KEK: what the next start will do.
    const installed = new SoftKeyStore(join(dataDir, KEYS_DIR), next.kek);
    for (const name of names) installed.load(name);
    return {
      rewrapped: names,
      from: { id: current.kek.id, version: current.kek.version, mode: current.kek.mode },
      to: { id: next.kek.id, version: next.kek.version },
      devKeyDestroyed,
    };
  } finally {
    releaseLock();
  }
}

/**
 * Rolls a committed rotation forward (step 4 above); false when there was none. Safe to
 * run concurrently with the rotating process: every move tolerates its source being gone.
 */
export function completeInterruptedRotation(
  dataDir: string,
  onStep: (step: RotationStep) => void = () => {},
): boolean {
  const committed = join(dataDir, ROTATION_COMMITTED_DIR);
  if (!existsSync(committed)) return false;
  const stagedKeys = join(committed, KEYS_DIR);
  const liveKeys = join(dataDir, KEYS_DIR);
  for (const f of listOrEmpty(stagedKeys)) {
    moveIfPresent(join(stagedKeys, f), join(liveKeys, f));
    onStep("key-moved");
  }
  fsyncDir(liveKeys);
  moveIfPresent(join(committed, KEK_PARAMS_FILE), join(dataDir, KEK_PARAMS_FILE));
  fsyncDir(dataDir);
  onStep("params-moved");
  // kek.json is in place, so the dev key is never consulted again (openKek reads kek.json first).
  destroyDevKek(join(dataDir, DEV_KEK_FILE));
  removeDirIfEmpty(stagedKeys);
  removeDirIfEmpty(committed);
  fsyncDir(dataDir);
  return true;
}

/**
 * Overwrites the development KEK with random bytes, fsyncs, unlinks, fsyncs the directory. What
 * that guarantees: the file's blocks are overwritten in place on a filesystem that overwrites in
 * place (ext4, xfs); on a copy-on-write or log-structured one (btrfs, zfs, f2fs), under
 * snapshots, backups or SSD wear levelling, old copies may survive. The CA keys' DEKs are not
 * changed by a KEK rotation, so anyone holding a copy of the old kek.key and the old key files
 * can still unwrap them: rotate the intermediate (and root) too if that copy may exist.
 */
function destroyDevKek(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, "r+");
  } catch (e) {
    // Gone already (never there, or another process finishing the same rotation got to it first).
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  try {
    const noise = randomBytes(Math.max(fstatSync(fd).size, 32));
    writeSync(fd, noise, 0, noise.length, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

function takeLock(dataDir: string): () => void {
  const path = join(dataDir, ROTATION_LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeNewFileDurably(path, `${process.pid}\n`, 0o600);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const holder = Number.parseInt(readFileOrEmpty(path), 10);
    if (Number.isSafeInteger(holder) && holder > 0 ? processAlive(holder) : justCreated(path)) {
      throw new OperatorError(`another "fleetca rotate kek" is running (pid ${Number.isNaN(holder) ? "unknown" : holder}); wait for it to finish`);
    }
    // The holder died (a crash mid-rotation): its lock protects nothing any more.
    rmSync(path, { force: true });
  }
  throw new OperatorError(`cannot take ${path}: another rotation keeps taking it`);
}

/** A lock with no pid yet may be one its holder is writing right now; an old one is a crash's. */
function justCreated(path: string): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs < 10_000;
  } catch {
    return false;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readFileOrEmpty(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function listOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
}

function moveIfPresent(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

function removeDirIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (e) {
    // ENOTEMPTY: another process is rolling forward and has files left to move; it removes it.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTEMPTY") throw e;
  }
}
