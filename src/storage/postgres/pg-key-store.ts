import type pg from "pg";
import { NoCaError, OperatorError } from "../../core/errors.js";
import type { CaKeyType } from "../../core/key-type.js";
import type { Secret } from "../../core/secret.js";
import type { CaKeyStore } from "../../signing/ca-key-store.js";
import { kekFromParams, kekIdOfParams, newPassphraseKek, type Kek } from "../../signing/kek.js";
import type { Signer } from "../../signing/signer.js";
import { openWrappedKey, sealNewKey } from "../../signing/wrapped-key.js";
import { inTransaction } from "./pg-transaction.js";

const KEY_NAME = /^[a-z0-9][a-z0-9._-]{0,100}$/;
const WHERE = "the database";

/**
 * The KEK of a PostgreSQL deployment: derived from the passphrase every replica is given and the
 * scrypt parameters in kek_params (migration 15), so all replicas derive the same KEK without a
 * shared file and without the KEK ever being stored. `create` (init, or the first replica on an
 * empty database) writes version 1's parameters if none are there: two replicas racing both
 * insert with ON CONFLICT DO NOTHING, then both read back the one that won, and derive from that.
 *
 * A development KEK (a random key in a file, no passphrase) cannot work here: it would exist in
 * one replica's dataDir only. The passphrase is required.
 */
export async function openPgKek(pool: pg.Pool, passphrase: Secret | undefined, opts: { create: boolean; now: Date }): Promise<{ kek: Kek; keys: PgKeyStore }> {
  let latest = await latestParams(pool);
  if (latest === null) {
    if (!opts.create) throw new NoCaError("no CA key material in the database (kek_params is empty)");
    if (!passphrase) {
      throw new OperatorError("storage type postgres needs a passphrase (FLEETCA_PASSPHRASE or passphraseFile): a development KEK would live in one replica's dataDir only");
    }
    const made = newPassphraseKek(passphrase, 1, null);
    await pool.query("INSERT INTO kek_params (version, params, created_at) VALUES (1, $1, $2) ON CONFLICT (version) DO NOTHING", [made.paramsFile, opts.now.getTime()]);
    latest = await latestParams(pool);
    if (latest === null) throw new Error("kek_params is empty right after inserting into it");
  }
  if (!passphrase) {
    throw new OperatorError("CA keys in the database are protected by a passphrase: set FLEETCA_PASSPHRASE or passphraseFile");
  }
  const keys = new PgKeyStore(pool, null as unknown as Kek);
  // isCurrent is synchronous (Kek); the store keeps it true until a write finds otherwise: each
  // generate() checks the database's newest KEK itself before it wraps anything.
  const kek = kekFromParams(latest.params, passphrase, WHERE, () => keys.kekCurrent);
  keys.useKek(kek);
  return { kek, keys };
}

async function latestParams(pool: pg.Pool): Promise<{ version: number; params: string } | null> {
  const r = await pool.query<{ version: number; params: string }>("SELECT version, params FROM kek_params ORDER BY version DESC LIMIT 1");
  return r.rows[0] ?? null;
}

/**
 * The CA's wrapped keys in the database (ca_keys, migration 15): the same texts a SQLite CA keeps
 * in keys/*.key.json, still wrapped by the KEK, so every replica can load the intermediate's key
 * and none needs a shared filesystem. A key is inserted once and never replaced by another (the
 * primary key refuses a second one of a name, whichever replica or command tries); the one write
 * that changes rows is `fleetca rotate kek` (pg-kek-rotation.ts), which re-wraps every row's DEK
 * under the new KEK and records the new kek_params version in one transaction: the private keys
 * stay the same, and a replica sees either all rows under the old KEK or all under the new one.
 * Running replicas keep the keys they already unwrapped; they must restart with the new
 * passphrase to load a key again or to generate one.
 */
export class PgKeyStore implements CaKeyStore {
  #kek: Kek;
  /** False once a write found a newer KEK version in kek_params (after `rotate kek`). */
  kekCurrent = true;

  constructor(
    private readonly pool: pg.Pool,
    kek: Kek,
  ) {
    this.#kek = kek;
  }

  /** @internal set once by openPgKek, which needs the store to build the KEK's isCurrent. */
  useKek(kek: Kek): void {
    this.#kek = kek;
  }

  async has(name: string): Promise<boolean> {
    checkName(name);
    const r = await this.pool.query("SELECT 1 FROM ca_keys WHERE name = $1", [name]);
    return r.rowCount === 1;
  }

  async load(name: string): Promise<Signer> {
    checkName(name);
    const r = await this.pool.query<{ record: string }>("SELECT record FROM ca_keys WHERE name = $1", [name]);
    const row = r.rows[0];
    if (!row) throw new OperatorError(`key ${name} not found in the database`);
    return openWrappedKey(row.record, name, this.#kek, `key ${name} in the database`, "row");
  }

  async generate(name: string, keyType: CaKeyType): Promise<Signer> {
    checkName(name);
    const { text, signer } = await sealNewKey(name, keyType, this.#kek);
    // The check that this KEK is still the newest and the insert are one transaction, the newest
    // kek_params row read FOR SHARE: its ROW SHARE table lock conflicts with the EXCLUSIVE lock a
    // rotation holds (pg-kek-rotation.ts), so a key is either inserted before a rotation reads
    // ca_keys (and re-wrapped by it) or refused after it (never left wrapped by a retired KEK).
    const inserted = await inTransaction(this.pool, "ISOLATION LEVEL READ COMMITTED", async (client) => {
      const r = await client.query<{ params: string }>("SELECT params FROM kek_params ORDER BY version DESC LIMIT 1 FOR SHARE");
      const latest = r.rows[0];
      if (latest === undefined || kekIdOfParams(latest.params, WHERE) !== this.#kek.id) return "rotated" as const;
      const ins = await client.query("INSERT INTO ca_keys (name, record, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING", [name, text, Date.now()]);
      return ins.rowCount === 1 ? ("inserted" as const) : ("exists" as const);
    });
    if (inserted === "rotated") {
      this.kekCurrent = false;
      throw new OperatorError(`cannot create key ${name}: the KEK was rotated since this process started; restart it with the new passphrase`);
    }
    if (inserted === "exists") throw new OperatorError(`key ${name} already exists in the database; refusing to overwrite`);
    return signer;
  }

  async names(): Promise<string[]> {
    const r = await this.pool.query<{ name: string }>("SELECT name FROM ca_keys ORDER BY name");
    return r.rows.map((row) => row.name);
  }
}

function checkName(name: string): void {
  if (!KEY_NAME.test(name)) throw new Error(`invalid key name ${name}`);
}
