import { createPublicKey, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Clock } from "../core/clock.js";
import { NoCaError, OperatorError } from "../core/errors.js";
import { parseDuration } from "../core/duration.js";
import { Secret } from "../core/secret.js";
import { sansToList } from "../core/sans.js";
import { writeFileAtomic } from "../core/atomic-file.js";
import type { FleetcaConfig } from "../config/schema.js";
import { passphraseFrom } from "../config/load.js";
import { createBootstrapToken } from "../attestation/bootstrap.js";
import { AgentError } from "../agent/errors.js";
import { httpsRequest, type HttpAnswer, type SignAnswer } from "../agent/ca-client.js";
import { LEAF_KEY_TYPES, makeKeyAndCsr, type LeafKeyType } from "../agent/csr.js";
import { describeCertificate } from "../x509/certificate-info.js";
import { fromSinglePem, toPem } from "../x509/pem.js";
import { DB_FILE } from "./data-dir.js";
import { openCa, openCaStorage } from "./open-ca.js";
import { bootstrapSettingsFor } from "./provisioners.js";
import { signAudience } from "./token-audience.js";

/** What `fleetca certificate` takes besides NAME (commander's parsed options). */
export interface CertificateOptions {
  san: string[];
  keyType: string;
  out?: string;
  ttl?: string;
  token?: string;
  tokenFile?: string;
  provisioner?: string;
  ca?: string;
  force?: boolean;
  json?: boolean;
}

/** The four files, in the order they are written: key.pem last (see writeFiles). */
const FILES = { cert: "cert.pem", chain: "chain.pem", fullchain: "fullchain.pem", key: "key.pem" } as const;
type FileRole = keyof typeof FILES;

/**
 * A token minted here only has to outlive one request; 5 minutes is `token create`'s default,
 * capped by the provisioner's maxTokenTTL so a stricter provisioner does not refuse it.
 */
const MINTED_TOKEN_TTL_MS = 5 * 60_000;

/** A CA restarting or a dropped connection: three tries, 0.5 s then 1 s apart, with one Idempotency-Key. */
const SEND_ATTEMPTS = 3;
const RESEND_DELAY_MS = 500;
const TRANSIENT = /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|socket hang up/;

/**
 * `fleetca certificate NAME`: the one-step path (like `step ca certificate`) for an operator who
 * wants a certificate now, without a cert-agent: a fresh key and CSR made here, a one-time
 * token (given, or minted as `fleetca token create` mints it), POST /v1/sign over TLS trusting
 * only this CA's roots, then key.pem, cert.pem, chain.pem and fullchain.pem in one directory.
 * Every refusal happens before a file is written; returns what to print on stdout.
 */
export async function certificateCommand(config: FleetcaConfig, name: string, o: CertificateOptions, clock: Clock): Promise<string> {
  const keyType = leafKeyType(o.keyType);
  if (o.ttl !== undefined) checkedTtl(o.ttl);
  if (o.token !== undefined && o.tokenFile !== undefined) throw new OperatorError("--token and --token-file are alternatives: give one");
  if (o.provisioner !== undefined && (o.token !== undefined || o.tokenFile !== undefined)) {
    throw new OperatorError("--provisioner picks who mints the token: it cannot be combined with --token or --token-file");
  }
  const sans = o.san.length > 0 ? o.san : [name];
  const dir = o.out ?? defaultOutDir(name);
  const paths = filePaths(dir);
  // Refused before the token is spent: the operator can move the files and run it again.
  refuseExisting(dir, paths, o.force === true);

  if (o.ca !== undefined) checkedCaUrl(o.ca);
  const roots = await trustedRoots(config, o.ca);
  const caBase = o.ca !== undefined ? o.ca.replace(/\/+$/, "") : signAudience(config).replace(/\/v1\/sign$/, "");
  const signUrl = `${caBase}/v1/sign`;
  const token = o.token !== undefined ? new Secret(o.token) : o.tokenFile !== undefined ? tokenFromFile(o.tokenFile) : await mintToken(config, name, sans, o, clock);

  const { keyPem, csrPem } = makeKeyAndCsr(sans, keyType);
  const issued = await submit(signUrl, roots, token, csrPem, o.ttl);
  const info = describeIssued(issued, keyPem);

  writeFiles(dir, paths, { key: keyPem, cert: issued.certificate, chain: issued.chain, fullchain: issued.certificate + issued.chain }, o.force === true, issued.serial);
  const files = { key: resolve(paths.key), cert: resolve(paths.cert), chain: resolve(paths.chain), fullchain: resolve(paths.fullchain) };
  if (o.json) return `${JSON.stringify({ serial: issued.serial, notAfter: info.notAfter, sans: info.sans, files })}\n`;
  return `${name}: serial ${issued.serial}, valid until ${info.notAfter}, files in ${dir}\n`;
}

function leafKeyType(v: string): LeafKeyType {
  if (!(LEAF_KEY_TYPES as readonly string[]).includes(v)) throw new OperatorError(`--key-type: "${v}" is not one of ${LEAF_KEY_TYPES.join(", ")}`);
  return v as LeafKeyType;
}

/** Checked here so a typo is one line before a token is spent; the CA parses the same syntax. */
function checkedTtl(v: string): number {
  try {
    return parseDuration(v);
  } catch {
    throw new OperatorError(`--ttl: invalid duration "${v}" (use e.g. 90s, 10m, 24h)`);
  }
}

/** The API listener speaks only TLS (the token must not cross the wire in clear). */
function checkedCaUrl(v: string): void {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new OperatorError(`--ca: "${v}" is not a URL (e.g. https://ca.internal:8443)`);
  }
  if (u.protocol !== "https:") throw new OperatorError(`--ca: ${v} must be an https:// URL (the CA's API listener)`);
}

/**
 * ./NAME made safe as one path component: a URI SAN's "://" or an IPv6 literal's ":" would
 * otherwise make subdirectories or awkward names; a name of dots alone would be "." or "..".
 */
function defaultOutDir(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, "_");
  return /^\.*$/.test(safe) ? safe.replace(/\./g, "_") || "_" : safe;
}

function filePaths(dir: string): Record<FileRole, string> {
  return { cert: join(dir, FILES.cert), chain: join(dir, FILES.chain), fullchain: join(dir, FILES.fullchain), key: join(dir, FILES.key) };
}

function refuseExisting(dir: string, paths: Record<FileRole, string>, force: boolean): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new OperatorError(`--out ${dir} exists and is not a directory`);
  if (force) return;
  const present = Object.values(paths).filter((p) => existsSync(p));
  if (present.length > 0) throw new OperatorError(`${present.join(", ")} already exist${present.length === 1 ? "s" : ""}: pass --force to replace, or choose another --out`);
}

/**
 * The TLS trust anchors: this CA's active roots from its own database, never the system store,
 * so a certificate for the API's name from any public CA cannot stand in for it (RFC 5280 §6.1:
 * the path must end at an anchor we chose). With --ca there must still be a local CA to read
 * them from; trusting whatever the URL presents would hand the token to anyone on the path.
 */
async function trustedRoots(config: FleetcaConfig, caFlag: string | undefined): Promise<string> {
  const dataDir = config.dataDir;
  if (config.storage.type === "sqlite" && !existsSync(join(dataDir, DB_FILE))) {
    if (caFlag === undefined) throw new NoCaError(`no CA in ${dataDir}`);
    throw new OperatorError(`--ca ${caFlag}: no CA database in ${dataDir} to take the trust roots from (only the CA's own roots are trusted): pass --config for the CA's dataDir`);
  }
  const storage = await openCaStorage(config, { readonly: true });
  try {
    // The same roots /roots.pem serves (trustBundle): active ones; a retired root is no anchor.
    const roots = (await storage.issuers.listIssuers()).filter((r) => r.role === "root" && r.status === "active");
    if (roots.length === 0) throw new OperatorError(`no active root in ${storage.location}: run "fleetca init"`);
    return roots.map((r) => toPem(r.der, "CERTIFICATE")).join("");
  } finally {
    await storage.close();
  }
}

/** The file holds the token and nothing else; its content never reaches a message. */
function tokenFromFile(path: string): Secret {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new OperatorError(`--token-file ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
  const t = text.trim();
  if (t === "") throw new OperatorError(`--token-file ${path} is empty`);
  return new Secret(t);
}

/**
 * Mints the token exactly as `fleetca token create --sub NAME --san …` would: same provisioner
 * choice, same audience, never admin. Unwrapping the provisioner key needs the passphrase, so a
 * missing or wrong one gives that command's operator error.
 */
async function mintToken(config: FleetcaConfig, name: string, sans: string[], o: CertificateOptions, clock: Clock): Promise<Secret> {
  const bootstrap = config.provisioners.flatMap((p) => (p.type === "bootstrap" ? [p] : []));
  const prov = o.provisioner ? bootstrap.find((p) => p.name === o.provisioner) : bootstrap[0];
  if (!prov) throw new OperatorError(o.provisioner ? `no bootstrap provisioner named ${o.provisioner}` : "no bootstrap provisioner configured");
  let audience: string;
  try {
    audience = signAudience(config);
  } catch (e) {
    // listen.api on port 0 with no daemon here: the URL the operator gave is the audience.
    if (o.ca === undefined) throw e;
    audience = `${o.ca.replace(/\/+$/, "")}/v1/sign`;
  }
  const settings = bootstrapSettingsFor(config, prov);
  const dd = await openCa(config, passphraseFrom(config), { create: false });
  try {
    return await createBootstrapToken(
      settings,
      dd.caKeys,
      dd.storage.operations,
      { subject: name, sans, ttlMs: Math.min(MINTED_TOKEN_TTL_MS, settings.maxTokenTtlMs), audience, admin: false },
      clock,
    );
  } finally {
    await dd.storage.close();
  }
}

/**
 * POST /v1/sign. A random Idempotency-Key, as cert-agent sends one: the CA stores its answer
 * under it, so a resend of this same request gets the same certificate back instead of
 * `replayed` (this command sends once). The token travels only in the Authorization header
 * (RFC 6750 §2.1), never in a message.
 */
async function submit(signUrl: string, roots: string, token: Secret, csrPem: string, ttl: string | undefined): Promise<SignAnswer> {
  // One key for every attempt: when a connection drops after the CA committed, the resend gets
  // the stored certificate, not `replayed` (the token is already spent by then).
  const idempotencyKey = randomUUID();
  let r: HttpAnswer | undefined;
  for (let attempt = 1; r === undefined; attempt++) {
    try {
      r = await httpsRequest(signUrl, {
        method: "POST",
        ca: roots,
        headers: { "content-type": "application/json", authorization: `Bearer ${token.reveal()}`, "idempotency-key": idempotencyKey },
        body: JSON.stringify({ csr: csrPem, ...(ttl !== undefined && { ttl }) }),
      });
    } catch (e) {
      if (!(e instanceof AgentError)) throw e;
      // Only a refused or dropped connection is worth a resend; a certificate that does not
      // chain to our roots (also "unreachable") will not chain on the next try either.
      if (e.code === "unreachable" && TRANSIENT.test(e.message) && attempt < SEND_ATTEMPTS) {
        await new Promise((res) => setTimeout(res, RESEND_DELAY_MS * attempt));
        continue;
      }
      // httpsRequest names only the origin ("cannot reach https://host:port: …"); name the URL.
      const detail = e.code === "unreachable" ? e.message.replace(/^(cannot reach|lost the connection to) \S+: /, "") : e.message;
      throw new OperatorError(`cannot reach the CA at ${signUrl}: ${oneLine(detail).trim()}`);
    }
  }
  if (r.status !== 201) throw new OperatorError(`the CA refused the request: ${refusal(r)}`);
  let j: SignAnswer;
  try {
    j = JSON.parse(r.body.toString("utf8")) as SignAnswer;
  } catch {
    throw new OperatorError(`${signUrl} answered 201 with a body that is not JSON`);
  }
  if (!j || typeof j.serial !== "string" || typeof j.certificate !== "string" || typeof j.chain !== "string") {
    throw new OperatorError(`${signUrl} answered 201 without serial, certificate and chain`);
  }
  return j;
}

/** SPEC error shape `{"error": CODE, "message": TEXT}` as CODE: TEXT; anything else (a proxy) as HTTP status and text. */
function refusal(r: HttpAnswer): string {
  const text = r.body.toString("utf8");
  try {
    const j = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (j && typeof j.error === "string") return oneLine(typeof j.message === "string" && j.message ? `${j.error}: ${j.message}` : j.error);
  } catch {
    /* not JSON: below */
  }
  return oneLine(`HTTP ${r.status}${text.trim() ? `: ${text.trim().slice(0, 200)}` : ""}`);
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ");
}

/**
 * What the CA issued, checked before anything is written: the certificate must carry the key
 * made here, so key.pem and cert.pem can never be a mismatched pair.
 */
function describeIssued(issued: SignAnswer, keyPem: string): { notAfter: string; sans: string[] } {
  const der = fromSinglePem(issued.certificate, ["CERTIFICATE"]);
  if (!der) throw new OperatorError("the CA's answer holds no single PEM certificate");
  const info = describeCertificate(der);
  const ours = createPublicKey(keyPem).export({ type: "spki", format: "der" });
  if (!ours.equals(Buffer.from(info.spki))) throw new OperatorError(`the certificate the CA returned (serial ${issued.serial}) is not for the key made here; nothing written`);
  return { notAfter: info.notAfter.toISOString(), sans: sansToList(info.sans) };
}

/**
 * Only after the CA's 201. Each file is replaced atomically (a reader sees old or new, never a
 * torn one); key.pem is written last, so in a fresh directory its presence means the set is
 * complete. The existence check is repeated: another process may have written there meanwhile.
 * Without --force nothing is ever replaced; with it, a crash part-way leaves some files new and
 * some old, and running the command again (with --force) repairs the set.
 */
function writeFiles(dir: string, paths: Record<FileRole, string>, content: Record<FileRole, string>, force: boolean, serial: string): void {
  try {
    refuseExisting(dir, paths, force);
  } catch (e) {
    throw new OperatorError(`${(e as Error).message} (written while the CA answered; certificate ${serial} was issued but nothing was saved)`);
  }
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const role of Object.keys(FILES) as FileRole[]) {
    // Public material 0644 (a web server's user may read it); the private key owner-only.
    writeFileAtomic(paths[role], content[role], role === "key" ? 0o600 : 0o644);
  }
}
