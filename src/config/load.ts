import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { OperatorError } from "../core/errors.js";
import { Secret } from "../core/secret.js";
import { readPassphraseFile } from "../signing/kek.js";
import { configSchema, type FleetcaConfig } from "./schema.js";

export interface LoadedConfig {
  config: FleetcaConfig;
  /** The file it came from, or null for built-in defaults. */
  source: string | null;
}

/**
 * Finds and validates the config: --config, else $FLEETCA_CONFIG, else ./config.yaml if present,
 * else defaults. Relative paths inside a config file are taken relative to that file, so a
 * service manager can start fleetca from any directory.
 */
export function loadConfig(explicit?: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const path = explicit ?? env.FLEETCA_CONFIG ?? (existsSync("config.yaml") ? "config.yaml" : null);
  let raw: unknown = {};
  if (path !== null) {
    if (!existsSync(path)) throw new OperatorError(`config file ${path} does not exist`);
    try {
      raw = parseYaml(readFileSync(path, "utf8")) ?? {};
    } catch (e) {
      throw new OperatorError(`${path}: not valid YAML: ${(e as Error).message.split("\n")[0]}`);
    }
    if (typeof raw !== "object" || Array.isArray(raw)) throw new OperatorError(`${path}: expected a YAML mapping at the top level`);
    if (raw && "passphrase" in (raw as object)) {
      throw new OperatorError(`${path}: passphrase must not be in the config; use FLEETCA_PASSPHRASE or passphraseFile`);
    }
  }
  // A container's one config serves many deployments: the URLs certificates carry and tokens
  // are minted for may come from the environment (issue 16), over the file's.
  const fromEnv = { publicUrl: env.FLEETCA_PUBLIC_URL, apiUrl: env.FLEETCA_API_URL };
  for (const [key, value] of Object.entries(fromEnv)) if (value) raw = { ...(raw as object), [key]: value };
  const r = configSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const envName = i.path.length === 1 && (i.path[0] === "publicUrl" || i.path[0] === "apiUrl") && fromEnv[i.path[0]] ? (i.path[0] === "publicUrl" ? "FLEETCA_PUBLIC_URL" : "FLEETCA_API_URL") : null;
    const where = envName ?? (i.path.length ? i.path.join(".") : "(top level)");
    const msg = i.code === "unrecognized_keys" ? `unknown key(s) ${i.keys.join(", ")}` : i.message;
    throw new OperatorError(`${path ?? "built-in config"}: ${where}: ${msg}`);
  }
  const base = path ? dirname(resolve(path)) : process.cwd();
  const config = r.data;
  config.dataDir = isAbsolute(config.dataDir) ? config.dataDir : resolve(base, config.dataDir);
  if (config.storage.type === "postgres" && config.storage.passwordFile && !isAbsolute(config.storage.passwordFile)) {
    config.storage.passwordFile = resolve(base, config.storage.passwordFile);
  }
  if (config.passphraseFile) {
    config.passphraseFile = isAbsolute(config.passphraseFile) ? config.passphraseFile : resolve(base, config.passphraseFile);
  }
  for (const p of config.provisioners) {
    if (p.type !== "bootstrap" && p.jwks.file && !isAbsolute(p.jwks.file)) p.jwks.file = resolve(base, p.jwks.file);
  }
  return { config, source: path };
}

/** The passphrase that unlocks CA keys: $FLEETCA_PASSPHRASE, else passphraseFile, else none (dev mode). */
export function passphraseFrom(config: FleetcaConfig, env: NodeJS.ProcessEnv = process.env): Secret | undefined {
  const fromEnv = env.FLEETCA_PASSPHRASE;
  if (fromEnv !== undefined && fromEnv !== "") return new Secret(fromEnv);
  if (config.passphraseFile) return readPassphraseFile(config.passphraseFile);
  return undefined;
}
