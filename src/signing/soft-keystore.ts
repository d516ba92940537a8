import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { OperatorError } from "../core/errors.js";
import { writeFileAtomic } from "../core/atomic-file.js";
import type { CaKeyType } from "../core/key-type.js";
import type { Kek } from "./kek.js";
import type { Signer } from "./signer.js";
import { openWrappedKey, rewrapKey, sealNewKey } from "./wrapped-key.js";

export { generateEphemeralSigner } from "./soft-signer.js";

export const KEY_FILE_SUFFIX = ".key.json";

/**
 * Software keys wrapped at rest (envelope encryption, wrapped-key.ts), one file per key in a
 * data dir's keys/ (the SQLite deployment; a PostgreSQL one keeps the same texts in the database,
 * storage/postgres/pg-key-store.ts).
 */
export class SoftKeyStore {
  readonly #dir: string;
  readonly #kek: Kek;

  constructor(dir: string, kek: Kek) {
    this.#dir = dir;
    this.#kek = kek;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  path(name: string): string {
    if (!/^[a-z0-9][a-z0-9._-]{0,100}$/.test(name)) throw new Error(`invalid key name ${name}`);
    return join(this.#dir, `${name}${KEY_FILE_SUFFIX}`);
  }

  has(name: string): boolean {
    return existsSync(this.path(name));
  }

  /** Generates a key pair, stores it wrapped (refusing to overwrite) and returns its Signer. */
  async generate(name: string, keyType: CaKeyType): Promise<Signer> {
    const path = this.path(name);
    if (existsSync(path)) throw new OperatorError(`key ${name} already exists at ${path}; refusing to overwrite`);
    if (!this.#kek.isCurrent()) {
      throw new OperatorError(`cannot create key ${name}: the KEK was rotated since this process started; restart it with the new passphrase`);
    }
    const { text, signer } = await sealNewKey(name, keyType, this.#kek);
    writeFileAtomic(path, text, 0o600);
    return signer;
  }

  /** Unwraps a stored key. A wrong KEK or a tampered file fails with a one-line operator error. */
  load(name: string): Signer {
    return openWrappedKey(this.#read(name), name, this.#kek, this.path(name));
  }

  /** Names of every stored key (the `*.key.json` files; temp files of an atomic write are not keys). */
  names(): string[] {
    if (!existsSync(this.#dir)) return [];
    return readdirSync(this.#dir)
      .filter((f) => f.endsWith(KEY_FILE_SUFFIX) && !f.startsWith("."))
      .map((f) => f.slice(0, -KEY_FILE_SUFFIX.length))
      .sort();
  }

  /**
   * The text of `name`'s key file with its DEK re-wrapped by `to` (KEK rotation). Only the
   * DEK's envelope and the recorded KEK id/version change: the sealed private key, its public
   * key and its AAD stay byte for byte, so the CA key itself is untouched. The caller writes
   * the text (kek-rotation.ts decides where and when).
   */
  rewrapped(name: string, to: Kek): string {
    return rewrapKey(this.#read(name), name, this.#kek, to, this.path(name));
  }

  #read(name: string): string {
    const path = this.path(name);
    if (!existsSync(path)) throw new OperatorError(`key ${name} not found at ${path}`);
    return readFileSync(path, "utf8");
  }
}

