import { createHash, createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { OperatorError } from "../core/errors.js";
import { CA_KEY_TYPES, type CaKeyType } from "../core/key-type.js";
import { KekMismatchError, type Kek } from "./kek.js";
import type { Signer } from "./signer.js";
import { open, seal, type SealedBox } from "./aead.js";
import { generateKeyPairFor, SoftSigner } from "./soft-signer.js";

/**
 * The stored form of one wrapped private key (a key file's text, or a database row's): envelope
 * encryption, a random DEK per key encrypting the PKCS#8 bytes with AES-256-GCM and the KEK
 * wrapping the DEK. Contains no key bytes in the clear; key bytes exist in the clear only inside
 * a SoftSigner's private field.
 */
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

/** Binds a sealed key to its name, type and public key, so records cannot be swapped or relabelled. */
function keyAad(name: string, keyType: CaKeyType, spki: Uint8Array): string {
  const fp = createHash("sha256").update(spki).digest("hex");
  return `fleetca-key/1|${name}|${keyType}|${fp}`;
}

const dekAad = (name: string) => `fleetca-dek/1|${name}`;

/** A new key pair and its wrapped text under `kek`; the caller stores the text (refusing to overwrite). */
export async function sealNewKey(name: string, keyType: CaKeyType, kek: Kek): Promise<{ text: string; signer: Signer }> {
  const { privateKey, publicKey } = await generateKeyPairFor(keyType);
  const spki = publicKey.export({ type: "spki", format: "der" });
  const dek = randomBytes(32);
  const file: WrappedKeyFile = {
    format: "fleetca-wrapped-key/1",
    name,
    keyType,
    publicKeySpki: spki.toString("base64"),
    kek: { id: kek.id, version: kek.version },
    dek: kek.wrap(dek, dekAad(name)),
    key: seal(dek, privateKey.export({ type: "pkcs8", format: "der" }), keyAad(name, keyType, spki)),
  };
  dek.fill(0);
  return { text: JSON.stringify(file, null, 2) + "\n", signer: new SoftSigner(keyType, spki, privateKey) };
}

/**
 * Unwraps a stored key (`where` names the file or row in errors, `noun` what it is). A wrong KEK or a tampered
 * record fails with a one-line operator error.
 */
export function openWrappedKey(text: string, name: string, kek: Kek, where: string, noun = "file"): Signer {
  const file = parseWrappedKey(text, name, where);
  const dek = unwrapDek(file, kek, where, noun);
  const spki = Buffer.from(file.publicKeySpki, "base64");
  const pkcs8 = open(dek, file.key, keyAad(name, file.keyType, spki));
  dek.fill(0);
  if (!pkcs8) throw new OperatorError(`cannot decrypt ${where}: the ${noun} was altered`);
  const privateKey = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  pkcs8.fill(0);
  const derived = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  if (!derived.equals(spki)) throw new OperatorError(`${where}: private key does not match its recorded public key`);
  return new SoftSigner(file.keyType, spki, privateKey);
}

/**
 * The text of a wrapped key with its DEK re-wrapped by `to` (KEK rotation). Only the DEK's
 * envelope and the recorded KEK id/version change: the sealed private key, its public key and its
 * AAD stay byte for byte, so the CA key itself is untouched.
 */
export function rewrapKey(text: string, name: string, from: Kek, to: Kek, where: string, noun = "file"): string {
  const file = parseWrappedKey(text, name, where);
  const dek = unwrapDek(file, from, where, noun);
  try {
    const next: WrappedKeyFile = { ...file, kek: { id: to.id, version: to.version }, dek: to.wrap(dek, dekAad(name)) };
    return JSON.stringify(next, null, 2) + "\n";
  } finally {
    dek.fill(0);
  }
}

function parseWrappedKey(text: string, name: string, where: string): WrappedKeyFile {
  let file: WrappedKeyFile;
  try {
    file = JSON.parse(text) as WrappedKeyFile;
  } catch {
    throw new OperatorError(`${where} is not valid JSON`);
  }
  if (file.format !== "fleetca-wrapped-key/1" || !CA_KEY_TYPES.includes(file.keyType) || file.name !== name) {
    throw new OperatorError(`${where} is not a fleetca wrapped key for ${name}`);
  }
  return file;
}

function unwrapDek(file: WrappedKeyFile, kek: Kek, where: string, noun: string): Buffer {
  if (file.kek.id !== kek.id) {
    // Each wrapped key names the KEK (and its version) that wrapped it: after a rotation a process
    // still holding the old KEK lands here instead of trying the wrong key.
    throw new KekMismatchError(
      `${where} is wrapped by KEK ${file.kek.id} (version ${file.kek.version}), but the configured KEK is ${kek.id} (version ${kek.version}); after "fleetca rotate kek", restart with the new passphrase`,
    );
  }
  const dek = kek.unwrap(file.dek, dekAad(file.name));
  if (!dek) throw new OperatorError(`cannot unwrap ${where}: KEK mismatch or the ${noun} was altered`);
  return dek;
}
