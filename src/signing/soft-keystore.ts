import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  createSign,
  sign as cryptoSign,
  type KeyObject,
} from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { OperatorError } from "../core/errors.js";
import { writeFileAtomic } from "../core/atomic-file.js";
import { SIGNATURE_SCHEMES, type CaKeyType, CA_KEY_TYPES } from "../core/key-type.js";
import { KekMismatchError, type Kek } from "./kek.js";
import { LARGE_INPUT_OCTETS, updateInSlices } from "./digest-in-slices.js";
import type { Signer } from "./signer.js";
import type { SealedBox } from "./aead.js";
import { open, seal } from "./aead.js";

const generateKeyPairAsync = promisify(generateKeyPair);

/** On-disk form of one wrapped private key. Contains no key bytes in the clear. */
interface WrappedKeyFile {
  format: "fleetca-wrapped-key/1";
  name: string;
  keyType: CaKeyType;
  publicKeySpki: string;
  kek: { id: string; version: number };
  /** The per-key DEK, sealed by the KEK. */
  dek: SealedBox;
  /** The PKCS#8 private key, sealed by the DEK. */
  key: SealedBox;
}

/** Binds a sealed key to its name, type and public key, so files cannot be swapped or relabelled. */
function keyAad(name: string, keyType: CaKeyType, spki: Uint8Array): string {
  const fp = createHash("sha256").update(spki).digest("hex");
  return `fleetca-key/1|${name}|${keyType}|${fp}`;
}

const dekAad = (name: string) => `fleetca-dek/1|${name}`;

export const KEY_FILE_SUFFIX = ".key.json";

/**
 * Software keys wrapped at rest (envelope encryption): a random DEK per key encrypts the PKCS#8
 * bytes with AES-256-GCM; the KEK wraps the DEK. Key bytes exist in the clear only inside a
 * SoftSigner's private field.
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
    const { privateKey, publicKey } = await generateKeyPairFor(keyType);
    const spki = publicKey.export({ type: "spki", format: "der" });
    const dek = randomBytes(32);
    const file: WrappedKeyFile = {
      format: "fleetca-wrapped-key/1",
      name,
      keyType,
      publicKeySpki: spki.toString("base64"),
      kek: { id: this.#kek.id, version: this.#kek.version },
      dek: this.#kek.wrap(dek, dekAad(name)),
      key: seal(dek, privateKey.export({ type: "pkcs8", format: "der" }), keyAad(name, keyType, spki)),
    };
    dek.fill(0);
    writeFileAtomic(path, JSON.stringify(file, null, 2) + "\n", 0o600);
    return new SoftSigner(keyType, spki, privateKey);
  }

  /** Unwraps a stored key. A wrong KEK or a tampered file fails with a one-line operator error. */
  load(name: string): Signer {
    const { path, file } = this.#read(name);
    const dek = this.#unwrapDek(path, file);
    const spki = Buffer.from(file.publicKeySpki, "base64");
    const pkcs8 = open(dek, file.key, keyAad(name, file.keyType, spki));
    dek.fill(0);
    if (!pkcs8) throw new OperatorError(`cannot decrypt ${path}: the file was altered`);
    const privateKey = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
    pkcs8.fill(0);
    const derived = createPublicKey(privateKey).export({ type: "spki", format: "der" });
    if (!derived.equals(spki)) throw new OperatorError(`${path}: private key does not match its recorded public key`);
    return new SoftSigner(file.keyType, spki, privateKey);
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
    const { path, file } = this.#read(name);
    const dek = this.#unwrapDek(path, file);
    try {
      const next: WrappedKeyFile = { ...file, kek: { id: to.id, version: to.version }, dek: to.wrap(dek, dekAad(name)) };
      return JSON.stringify(next, null, 2) + "\n";
    } finally {
      dek.fill(0);
    }
  }

  #read(name: string): { path: string; file: WrappedKeyFile } {
    const path = this.path(name);
    if (!existsSync(path)) throw new OperatorError(`key ${name} not found at ${path}`);
    let file: WrappedKeyFile;
    try {
      file = JSON.parse(readFileSync(path, "utf8")) as WrappedKeyFile;
    } catch {
      throw new OperatorError(`${path} is not valid JSON`);
    }
    if (file.format !== "fleetca-wrapped-key/1" || !CA_KEY_TYPES.includes(file.keyType) || file.name !== name) {
      throw new OperatorError(`${path} is not a fleetca wrapped key for ${name}`);
    }
    return { path, file };
  }

  #unwrapDek(path: string, file: WrappedKeyFile): Buffer {
    if (file.kek.id !== this.#kek.id) {
      // Each key file names the KEK (and its version) that wrapped it: after a rotation a process
      // still holding the old KEK lands here instead of trying the wrong key.
      throw new KekMismatchError(
        `${path} is wrapped by KEK ${file.kek.id} (version ${file.kek.version}), but the configured KEK is ${this.#kek.id} (version ${this.#kek.version}); after "fleetca rotate kek", restart with the new passphrase`,
      );
    }
    const dek = this.#kek.unwrap(file.dek, dekAad(file.name));
    if (!dek) throw new OperatorError(`cannot unwrap ${path}: KEK mismatch or the file was altered`);
    return dek;
  }
}

function generateKeyPairFor(keyType: CaKeyType): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  switch (keyType) {
    case "ecdsa-p256":
      return generateKeyPairAsync("ec", { namedCurve: "P-256" });
    case "ecdsa-p384":
      return generateKeyPairAsync("ec", { namedCurve: "P-384" });
    case "ed25519":
      return generateKeyPairAsync("ed25519");
    case "rsa-3072":
      return generateKeyPairAsync("rsa", { modulusLength: 3072, publicExponent: 65537 });
    case "rsa-4096":
      return generateKeyPairAsync("rsa", { modulusLength: 4096, publicExponent: 65537 });
  }
}

/**
 * Generates a key that lives only in memory (the API listener's own serving key): never written.
 */
export async function generateEphemeralSigner(keyType: CaKeyType): Promise<Signer & { privateKeyPem(): string }> {
  const { privateKey, publicKey } = await generateKeyPairFor(keyType);
  const spki = publicKey.export({ type: "spki", format: "der" });
  return new EphemeralSigner(keyType, spki, privateKey);
}

class SoftSigner implements Signer {
  readonly #key: KeyObject;
  constructor(
    readonly keyType: CaKeyType,
    readonly publicKeySpki: Uint8Array,
    key: KeyObject,
  ) {
    this.#key = key;
  }
  async sign(data: Uint8Array): Promise<Uint8Array> {
    const hash = SIGNATURE_SCHEMES[this.keyType].hash;
    if (hash && data.length > LARGE_INPUT_OCTETS) {
      // A big CRL: hashed in slices on the event loop, then only the digest is signed.
      const s = createSign(hash);
      await updateInSlices(s, data);
      return s.sign(this.#key);
    }
    // The callback form runs in libuv's thread pool, off the event loop.
    return new Promise((resolve, reject) =>
      cryptoSign(hash, data, this.#key, (err, sig) => (err ? reject(err) : resolve(sig))),
    );
  }
  signOnThisThread(data: Uint8Array): Uint8Array {
    if (data.length > LARGE_INPUT_OCTETS) throw new Error("signOnThisThread is for small inputs; use sign()");
    return cryptoSign(SIGNATURE_SCHEMES[this.keyType].hash, data, this.#key);
  }
  toJSON(): string {
    return `[Signer ${this.keyType}]`;
  }
}

/**
 * The serving key of the HTTPS listener must be handed to node:tls as PEM; this is the one
 * place key bytes leave src/signing, and only for a key that never touches disk.
 */
class EphemeralSigner extends SoftSigner {
  readonly #pem: string;
  constructor(keyType: CaKeyType, spki: Uint8Array, key: KeyObject) {
    super(keyType, spki, key);
    this.#pem = key.export({ type: "pkcs8", format: "pem" }) as string;
  }
  privateKeyPem(): string {
    return this.#pem;
  }
}
