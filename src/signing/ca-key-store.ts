import type { CaKeyType } from "../core/key-type.js";
import type { Signer } from "./signer.js";
import type { SoftKeyStore } from "./soft-keystore.js";

/**
 * Where the CA's wrapped keys are kept, as the daemon and the commands that sign use them: a
 * data dir's key files (SQLite deployments, signing/soft-keystore.ts) or the database replicas
 * share (storage/postgres/pg-key-store.ts). Asynchronous, as the database is a round trip away.
 * The keys stay wrapped at rest either way (signing/wrapped-key.ts); only load() unwraps one.
 */
export interface CaKeyStore {
  has(name: string): Promise<boolean>;
  /** Unwraps a stored key; a wrong KEK or a tampered record fails with a one-line operator error. */
  load(name: string): Promise<Signer>;
  /** Generates a key pair and stores it wrapped, refusing to overwrite one of that name. */
  generate(name: string, keyType: CaKeyType): Promise<Signer>;
  names(): Promise<string[]>;
}

/** A data dir's key files as a CaKeyStore (SoftKeyStore stays synchronous for `rotate kek`). */
export class FileKeyStore implements CaKeyStore {
  constructor(readonly files: SoftKeyStore) {}

  async has(name: string): Promise<boolean> {
    return this.files.has(name);
  }

  async load(name: string): Promise<Signer> {
    return this.files.load(name);
  }

  generate(name: string, keyType: CaKeyType): Promise<Signer> {
    return this.files.generate(name, keyType);
  }

  async names(): Promise<string[]> {
    return this.files.names();
  }
}
