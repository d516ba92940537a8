import { existsSync, readFileSync, statSync } from "node:fs";
import { createHash, randomBytes, scryptSync } from "node:crypto";
import { join } from "node:path";
import { NoCaError, OperatorError } from "../core/errors.js";
import { Secret } from "../core/secret.js";
import { writeFileAtomic } from "../core/atomic-file.js";
import { open, seal, type SealedBox } from "./aead.js";

/**
 * The key-encryption key that wraps every per-key DEK (envelope encryption, DESIGN habit 7).
 * Its id and version are recorded in each wrapped key so the KEK can be rotated by re-wrapping
 * DEKs only, and so a key file is never tried against the wrong KEK.
 */
export interface Kek {
  readonly id: string;
  readonly version: number;
  readonly mode: "passphrase" | "development";
  wrap(dek: Uint8Array, aad: string): SealedBox;
  unwrap(box: SealedBox, aad: string): Buffer | null;
  /**
   * False once `fleetca rotate kek` replaced this KEK on disk: a process that still holds it
   * (a running daemon) must not wrap a new key with it, or that key would be lost to the new KEK.
   */
  isCurrent(): boolean;
}

/**
 * The KEK offered cannot open the data dir's keys (wrong or missing passphrase, a key file wrapped
 * by another KEK). Its own class so a daemon can tell a worker that fails after `fleetca rotate
 * kek` (it inherited the old passphrase) from other start-up failures.
 */
export class KekMismatchError extends OperatorError {
  override readonly name = "KekMismatchError";
}

export const KEK_PARAMS_FILE = "kek.json";
export const DEV_KEK_FILE = "kek.key";

// scrypt cost: N=2^15, r=8 needs 32 MiB and ~0.1 s, the RFC 7914 §2 interactive-login order.
const SCRYPT = { N: 1 << 15, r: 8, p: 1 } as const;
const CHECK_AAD = "fleetca-kek-check/1";
const CHECK_TEXT = "fleetca passphrase check";

interface KekParamsFile {
  format: "fleetca-kek/1";
  kind: "scrypt";
  id: string;
  version: number;
  /** When this KEK version was made (init or rotation); named in the wrong-passphrase error. */
  createdAt?: string;
  salt: string;
  N: number;
  r: number;
  p: number;
  check: SealedBox;
}

class AesKek implements Kek {
  readonly #key: Buffer;
  constructor(
    key: Buffer,
    readonly id: string,
    readonly version: number,
    readonly mode: "passphrase" | "development",
    /**
     * Where this KEK's material lives: a data dir (its files say which KEK is current), a check of
     * its own (a database's KEK: storage/postgres/pg-key-store.ts checks before each write), or
     * null for a KEK not yet installed (a rotation's new one).
     */
    private readonly home: string | (() => boolean) | null,
  ) {
    this.#key = key;
  }
  isCurrent(): boolean {
    if (this.home === null) return false;
    if (typeof this.home === "function") return this.home();
    return currentKekId(this.home) === this.id;
  }
  wrap(dek: Uint8Array, aad: string): SealedBox {
    return seal(this.#key, dek, aad);
  }
  unwrap(box: SealedBox, aad: string): Buffer | null {
    return open(this.#key, box, aad);
  }
}

export interface KekSource {
  dataDir: string;
  /** From FLEETCA_PASSPHRASE or passphraseFile; absent means development mode. */
  passphrase?: Secret | undefined;
  /** Create the KEK material when the data dir has none (init); otherwise its absence is an error. */
  create: boolean;
}

export function openKek(src: KekSource): Kek {
  const paramsPath = join(src.dataDir, KEK_PARAMS_FILE);
  const devPath = join(src.dataDir, DEV_KEK_FILE);
  if (existsSync(paramsPath)) {
    if (!src.passphrase) {
      throw new KekMismatchError(
        `CA keys in ${src.dataDir} are protected by a passphrase: set FLEETCA_PASSPHRASE or passphraseFile`,
      );
    }
    return passphraseKek(readParams(paramsPath), src.passphrase, src.dataDir);
  }
  if (existsSync(devPath)) {
    if (src.passphrase) {
      throw new OperatorError(
        `${src.dataDir} was initialised in development mode (${DEV_KEK_FILE}, no passphrase); unset FLEETCA_PASSPHRASE/passphraseFile for it`,
      );
    }
    assertPrivateMode(devPath);
    const key = readDevKey(devPath);
    return new AesKek(key, kekIdFor(key, "dev"), 1, "development", src.dataDir);
  }
  if (!src.create) {
    throw new NoCaError(`no CA key material in ${src.dataDir}`);
  }
  if (src.passphrase) {
    const made = newPassphraseKek(src.passphrase, 1, src.dataDir);
    writeFileAtomic(paramsPath, made.paramsFile, 0o600);
    return made.kek;
  }
  const key = randomBytes(32);
  writeFileAtomic(devPath, key, 0o600);
  return new AesKek(key, kekIdFor(key, "dev"), 1, "development", src.dataDir);
}

/**
 * A new passphrase KEK (fresh salt, so a new id even for the same passphrase) and the text of its
 * `kek.json`, not yet written: init writes it at once into `dataDir`, a rotation stages it
 * (kek-rotation.ts; `dataDir` null: until the commit it is not the data dir's KEK).
 */
export function newPassphraseKek(passphrase: Secret, version: number, dataDir: string | null): { kek: Kek; paramsFile: string } {
  const salt = randomBytes(16);
  const key = derive(passphrase, salt, SCRYPT);
  const params: KekParamsFile = {
    format: "fleetca-kek/1",
    kind: "scrypt",
    id: kekIdFor(salt, "scrypt"),
    version,
    createdAt: new Date().toISOString(),
    salt: salt.toString("base64"),
    ...SCRYPT,
    check: seal(key, Buffer.from(CHECK_TEXT), CHECK_AAD),
  };
  return { kek: new AesKek(key, params.id, version, "passphrase", dataDir), paramsFile: JSON.stringify(params, null, 2) + "\n" };
}

/** The id of the KEK that dataDir's files name now (kek.json, else kek.key), or null if none. */
function currentKekId(dataDir: string): string | null {
  const paramsPath = join(dataDir, KEK_PARAMS_FILE);
  if (existsSync(paramsPath)) return readParams(paramsPath).id;
  const devPath = join(dataDir, DEV_KEK_FILE);
  if (existsSync(devPath)) return kekIdFor(readDevKey(devPath), "dev");
  return null;
}

function readDevKey(devPath: string): Buffer {
  const key = readFileSync(devPath);
  if (key.length !== 32) throw new OperatorError(`${devPath} is not a 32-byte KEK`);
  return key;
}

/**
 * The KEK of parameters kept elsewhere than a data dir (a database shared by replicas): `where`
 * names it in errors, `isCurrent` says whether it is still the newest (see Kek.isCurrent).
 */
export function kekFromParams(paramsText: string, passphrase: Secret, where: string, isCurrent: () => boolean): Kek {
  return passphraseKek(parseParams(paramsText, where), passphrase, where, isCurrent);
}

/** The id a KEK parameter text names (kek.json's `id`), without deriving the KEK. */
export function kekIdOfParams(paramsText: string, where: string): string {
  return parseParams(paramsText, where).id;
}

function passphraseKek(params: KekParamsFile, passphrase: Secret, dataDir: string, home: string | (() => boolean) = dataDir): Kek {
  const key = derive(passphrase, Buffer.from(params.salt, "base64"), params);
  const check = open(key, params.check, CHECK_AAD);
  if (!check || check.toString() !== CHECK_TEXT) {
    // After `fleetca rotate kek` the old passphrase lands here: naming the version and its date
    // tells the operator which passphrase is wanted without saying anything about it.
    const since = params.version > 1 ? ` (KEK version ${params.version}${params.createdAt ? `, since ${params.createdAt}` : ""})` : "";
    throw new KekMismatchError(`wrong passphrase: cannot unlock the CA keys in ${dataDir}${since}`);
  }
  return new AesKek(key, params.id, params.version, "passphrase", home);
}

function derive(passphrase: Secret, salt: Buffer, p: { N: number; r: number; p: number }): Buffer {
  return scryptSync(passphrase.reveal().normalize("NFC"), salt, 32, {
    N: p.N,
    r: p.r,
    p: p.p,
    maxmem: 256 * p.N * p.r,
  });
}

function readParams(path: string): KekParamsFile {
  return parseParams(readFileSync(path, "utf8"), path);
}

function parseParams(text: string, path: string): KekParamsFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new OperatorError(`${path} is not valid JSON`);
  }
  const p = parsed as Partial<KekParamsFile>;
  if (p.format !== "fleetca-kek/1" || p.kind !== "scrypt" || typeof p.salt !== "string" || !p.check) {
    throw new OperatorError(`${path} is not a fleetca KEK parameter file`);
  }
  if (![p.N, p.r, p.p].every((n) => Number.isSafeInteger(n) && (n as number) > 0)) {
    throw new OperatorError(`${path} has invalid scrypt parameters`);
  }
  return p as KekParamsFile;
}

/** A KEK id names the KEK without revealing it: a hash of its salt (or, for the dev key, of the key). */
function kekIdFor(material: Buffer, kind: string): string {
  return `${kind}-${createHash("sha256").update(kind).update(material).digest("hex").slice(0, 16)}`;
}

export function assertPrivateMode(path: string): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    throw new OperatorError(
      `${path} is readable by group or others (mode ${mode.toString(8).padStart(4, "0")}); run: chmod 600 ${path}`,
    );
  }
}

/**
 * Reads a passphrase file (config passphraseFile, or `rotate kek --new-passphrase-file`, named by
 * `what` in errors): first line, trailing newline dropped, 0600 required.
 */
export function readPassphraseFile(path: string, what = "passphraseFile"): Secret {
  if (!existsSync(path)) throw new OperatorError(`${what} ${path} does not exist`);
  assertPrivateMode(path);
  const text = readFileSync(path, "utf8").replace(/\r?\n$/, "");
  if (text.length === 0) throw new OperatorError(`${what} ${path} is empty`);
  return new Secret(text);
}
