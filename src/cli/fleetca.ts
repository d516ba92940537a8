#!/usr/bin/env node
import { Command, CommanderError, Option } from "commander";
import { systemClock } from "../core/clock.js";
import { CaError, NoCaError, OperatorError } from "../core/errors.js";
import { formatRemaining, parseDuration } from "../core/duration.js";
import { sansToList } from "../core/sans.js";
import { loadConfig, passphraseFrom, type LoadedConfig } from "../config/load.js";
import { resolve as resolvePath } from "node:path";
import { liveServeState } from "./serve-state.js";
import { createBootstrapToken } from "../attestation/bootstrap.js";
import { createLogger } from "../log/logger.js";
import { crlReasonName, ISSUER_REVOCATION_REASONS, LEAF_REVOCATION_REASONS, parseIssuerRevocationReason, parseRevocationReason, type RevocationReason } from "../core/revocation-reason.js";
import { RevokeService } from "../revocation/revoke-service.js";
import { signRootCrl } from "../revocation/crl/root-crl.js";
import { bindIssuer } from "../issuance/issuer.js";
import { openCa, openCaStorage } from "./open-ca.js";
import type { OpenedCa } from "./data-dir.js";
import type { CaStorage } from "../storage/ca-storage.js";
import type { FleetcaConfig } from "../config/schema.js";
import { recordOperatorEvent } from "./operator-event.js";
import { normaliseSerial } from "../core/serial.js";
import { startDaemon } from "./daemon.js";
import { initHierarchy } from "./init.js";
import { registerAuditCommands } from "./audit-commands.js";
import { rotateKekCommand } from "./rotate-kek.js";
import { retireRoot, rotateRoot } from "./rotate-root.js";
import { signAudience } from "./token-audience.js";
import { bootstrapSettingsFor } from "./provisioners.js";
import { MIN_PULL_MS, pullRenewalWindows, renewalSelectorOf } from "../registration/renewal-override.js";
import { DEFAULT_MIGRATE_WITHIN_MS, rotateIntermediate } from "./intermediate-rotation.js";
import { revokeIssuer } from "./issuer-kill-switch.js";
import { caStatus, daemonState, formatStatus } from "./status.js";
import { packageVersion } from "../core/package-version.js";
import { certificateCommand, type CertificateOptions } from "./certificate-command.js";
import { formatMigrateStore, migrateStore } from "./migrate-store.js";

const program = new Command("fleetca")
  .description("fleetca: a private certificate authority for service fleets")
  .version(packageVersion(), "--version", "print fleetca's version")
  // A usage mistake is one line and a pointer to --help (issue 16), like every other operator
  // error, not commander's "error: …" followed by the whole usage. Subcommands inherit this.
  .configureOutput({ outputError: (str, write) => write(`fleetca: ${str.replace(/^error: /, "").trim()} (see --help)\n`) })
  .exitOverride();

/** SIGTERM / SIGINT: how long requests in flight may take to finish before connections are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

const configOption = () => new Option("--config <file>", "config file (default: $FLEETCA_CONFIG, else ./config.yaml if present)");

/** The config file this run read (null: built-in defaults), for the hint on a "no CA here" error. */
let configRead: { source: string | null } | undefined;

/**
 * Every command's config: loadConfig, remembered for error hints. With listen.public on port 0
 * and no publicUrl, certificates made offline (init, rotations) name the running daemon's bound
 * public URL, as tokens name its bound API URL (token-audience.ts).
 */
function load(path: string | undefined): LoadedConfig {
  const loaded = loadConfig(path);
  configRead = loaded;
  const { config } = loaded;
  if (config.publicUrlSource === "listen.public" && config.listen.public.endsWith(":0")) {
    const running = liveServeState(config.dataDir);
    if (running) config.publicUrl = running.publicUrl;
  }
  return loaded;
}

/** `--config` as the operator should see it: the absolute file, or that there was none. */
const configShown = (source: string | null): string => (source === null ? "(none: built-in defaults)" : resolvePath(source));

function durationArg(flag: string) {
  return (v: string) => {
    try {
      return parseDuration(v);
    } catch {
      throw new OperatorError(`${flag}: invalid duration "${v}" (use e.g. 90s, 10m, 24h)`);
    }
  };
}

program
  .command("init")
  .description("create the root and online intermediate in dataDir (refuses to overwrite)")
  .addOption(configOption())
  .option("--json", "one JSON object")
  .action(async (o: { config?: string; json?: boolean }) => {
    const { config, source } = load(o.config);
    const r = await initHierarchy(config, passphraseFrom(config), systemClock);
    if (o.json) {
      const { rootKeyId, intermediateKeyId, rootFingerprint, developmentMode } = r;
      process.stdout.write(`${JSON.stringify({ dataDir: config.dataDir, configFile: source === null ? null : resolvePath(source), rootKeyId, intermediateKeyId, rootFingerprint, protection: developmentMode ? "development" : "passphrase", publicUrl: config.publicUrl })}\n`);
      return;
    }
    process.stdout.write(
      [
        `initialised CA in ${config.dataDir}`,
        `config:               ${configShown(source)}`,
        `certificates name:    ${config.publicUrl} (OCSP, CRLs; publicUrl)`,
        `root key id:          ${r.rootKeyId}`,
        `intermediate key id:  ${r.intermediateKeyId}`,
        `root SHA-256:         ${r.rootFingerprint}`,
        ...(r.developmentMode ? ["WARNING: development mode: no passphrase; the KEK is stored in dataDir/kek.key"] : []),
      ].join("\n") + "\n",
    );
  });

program
  .command("serve")
  .description("run the CA daemon (initialises an empty dataDir first)")
  .addOption(configOption())
  .action(async (o: { config?: string }) => {
    const { config, source } = load(o.config);
    const log = createLogger({ level: config.log.level, format: config.log.format });
    log.info({ config: configShown(source), dataDir: config.dataDir }, "starting");
    const daemon = await startDaemon(config, { passphrase: passphraseFrom(config), clock: systemClock, log, configSource: source === null ? null : resolvePath(source) });
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "shutting down");
      // Requests in flight get SHUTDOWN_GRACE_MS to finish; the last tree head is then signed.
      void daemon.close({ graceMs: SHUTDOWN_GRACE_MS }).then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });

const token = program.command("token").description("one-time bootstrap tokens");
token
  .command("create")
  .description("print a one-time bootstrap JWT authorising the given SANs")
  .requiredOption("--sub <name>", "subject the token is for (e.g. the host name)")
  // No default value: commander then enforces "required" (a default [] would satisfy it).
  .requiredOption("--san <san>", "a SAN the token allows (repeatable): DNS name, IP or URI", (v: string, acc: string[] | undefined) => [...(acc ?? []), v])
  .option("--ttl <duration>", "token lifetime", "5m")
  .option("--provisioner <name>", "bootstrap provisioner to sign with")
  .option("--aud <url>", "audience (the CA's sign URL); default {apiUrl}/v1/sign")
  .option("--admin", "the token may list admin SANs (config admins); required for them, refused without them")
  .option("--json", "one JSON object: the token, its subject, SANs, audience, provisioner and expiry")
  .addOption(configOption())
  .action(async (o: { sub: string; san: string[]; ttl: string; provisioner?: string; aud?: string; admin?: boolean; json?: boolean; config?: string }) => {
    const { config } = load(o.config);
    const bootstrap = config.provisioners.flatMap((p) => (p.type === "bootstrap" ? [p] : []));
    const prov = o.provisioner ? bootstrap.find((p) => p.name === o.provisioner) : bootstrap[0];
    if (!prov) throw new OperatorError(o.provisioner ? `no bootstrap provisioner named ${o.provisioner}` : "no bootstrap provisioner configured");
    const dd = await openCa(config, passphraseFrom(config), { create: false });
    try {
      const ttlMs = durationArg("--ttl")(o.ttl);
      const audience = o.aud ?? signAudience(config);
      const jwt = await createBootstrapToken(
        bootstrapSettingsFor(config, prov),
        dd.caKeys,
        dd.storage.operations,
        { subject: o.sub, sans: o.san, ttlMs, audience, admin: o.admin === true },
        systemClock,
      );
      // stdout only: the token is a secret, and a pipe or a 0600 file is where it should go.
      if (o.json) {
        const expiresAt = new Date(systemClock.now().getTime() + ttlMs).toISOString();
        process.stdout.write(`${JSON.stringify({ token: jwt.reveal(), subject: o.sub, sans: o.san, audience, provisioner: prov.name, admin: o.admin === true, expiresAt })}\n`);
      } else process.stdout.write(jwt.reveal() + "\n");
    } finally {
      await dd.storage.close();
    }
  });

program
  .command("certificate")
  .description("one step: a fresh key and CSR, a token (minted unless given), POST /v1/sign; writes key.pem, cert.pem, chain.pem, fullchain.pem")
  .argument("<name>", "the name the certificate is for: DNS name, IP or URI (the only SAN unless --san is given)")
  .option("--san <san>", "a SAN to request (repeatable): DNS name, IP or URI; default NAME", (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option("--key-type <type>", "p256, p384, ed25519 or rsa2048", "p256")
  .option("--out <dir>", "directory for the files (created 0700); default ./NAME")
  .option("--ttl <duration>", "requested certificate lifetime (the provisioner's default otherwise)")
  .option("--token <jwt>", "one-time token to use instead of minting one (other users can read a command line: prefer --token-file)")
  .option("--token-file <file>", "file holding the one-time token to use")
  .option("--provisioner <name>", "bootstrap provisioner that mints the token (default: the first)")
  .option("--ca <url>", "the CA's API base URL; default derived from apiUrl or the running daemon")
  .option("--force", "replace existing files in --out")
  .option("--json", "one JSON object: serial, notAfter, sans, files")
  .addOption(configOption())
  .action(async (name: string, o: CertificateOptions & { config?: string }) => {
    const { config } = load(o.config);
    process.stdout.write(await certificateCommand(config, name, o, systemClock));
  });

program
  .command("list")
  .description("inventory of issued certificates (unexpired unless --expiring/--revoked say otherwise)")
  .option("--expiring <duration>", "only certificates expiring within this duration")
  .option("--revoked", "only revoked certificates")
  .option("--all", "also certificates a renewal or a newer API serving certificate superseded (still valid until they expire)")
  .option("--json", "one JSON array with full records")
  .addOption(configOption())
  .action(async (o: { expiring?: string; revoked?: boolean; all?: boolean; json?: boolean; config?: string }) => {
    const { config } = load(o.config);
    const now = systemClock.now();
    await withCaStorage(config, { readonly: true }, async (storage) => {
      const rows = await storage.issuers.listCertificates({
        notExpiredAt: now,
        ...(o.revoked && { revoked: true }),
        ...(o.all && { includeSuperseded: true }),
        ...(o.expiring && { expiringBefore: new Date(now.getTime() + durationArg("--expiring")(o.expiring)) }),
      });
      if (o.json) {
        const out = rows.map(({ der: _der, ...r }) => ({ ...r, sans: sansToList(r.sans) }));
        process.stdout.write(JSON.stringify(out, null, 2) + "\n");
        return;
      }
      const lines = rows.map((r) =>
        [r.serial, r.status.padEnd(7), r.notAfter.toISOString(), formatRemaining(r.notAfter.getTime() - now.getTime()).padEnd(10), r.provisioner.padEnd(12), sansToList(r.sans).join(",")].join("  "),
      );
      const header = ["SERIAL".padEnd(32), "STATUS".padEnd(7), "NOT AFTER".padEnd(24), "EXPIRES IN", "PROVISIONER".padEnd(12), "SANS"].join("  ");
      process.stdout.write([header, ...lines].join("\n") + "\n");
    });
  });

program
  .command("revoke")
  .description("revoke a certificate by serial (writes the database; needs no passphrase)")
  .argument("<serial>", "serial number, hex as `fleetca list` prints it")
  .option("--reason <reason>", `RFC 5280 reason: ${LEAF_REVOCATION_REASONS.join(", ")} (or its code)`)
  .option("--json", "one JSON object")
  .addOption(configOption())
  .action(async (serial: string, o: { reason?: string; json?: boolean; config?: string }) => {
    const { config } = load(o.config);
    let reason: RevocationReason;
    try {
      reason = parseRevocationReason(o.reason);
    } catch (e) {
      throw new OperatorError(`--reason: ${(e as Error).message}`);
    }
    await withCaStorage(config, {}, async (storage) => {
      // stdout carries the one result line; the daemon's log line for a revoke is not wanted here.
      // Replicas on PostgreSQL hear of it at once (NOTIFY at commit); a SQLite daemon's revocation
      // feed polls the file every second.
      const service = new RevokeService(storage.requests, systemClock, createLogger({ level: "silent", format: "logfmt" }));
      const r = await service.revokeAsOperator(serial, reason);
      if (o.json) process.stdout.write(`${JSON.stringify({ serial: r.serial, revokedAt: r.revokedAt.toISOString(), reason: crlReasonName(reason), alreadyRevoked: r.alreadyRevoked })}\n`);
      else process.stdout.write(`revoked ${r.serial} at ${r.revokedAt.toISOString()}${r.alreadyRevoked ? " (already revoked; unchanged)" : ""}\n`);
    });
  });

program
  .command("renew-window")
  .description("pull renewal windows forward so that the named live certificates renew within DURATION (GET /v1/renewal-info)")
  .option("--issuer <keyid>", "certificates of this issuer (key id as `fleetca init` prints it)")
  .option("--provisioner <name>", "certificates issued through this provisioner")
  .option("--serial <serial>", "one certificate, hex as `fleetca list` prints it")
  .requiredOption("--by <duration>", "renew within this long from now (at least 1m), e.g. 1h")
  .addOption(configOption())
  .action(async (o: { issuer?: string; provisioner?: string; serial?: string; by: string; config?: string }) => {
    const { config } = load(o.config);
    const byMs = durationArg("--by")(o.by);
    await withCaStorage(config, {}, async (storage) => {
      // The one certificate --serial names, looked up first (the selector's checks are synchronous).
      const serial = o.serial === undefined ? null : normaliseSerial(o.serial.trim());
      const named = serial === null ? null : await storage.requests.getCertificate(serial);
      const selector = renewalSelectorOf(o, {
        issuerKeyIds: (await storage.issuers.listIssuers()).map((i) => i.keyId),
        provisioners: config.provisioners.map((p) => p.name),
        hasCertificate: (s) => named !== null && named.serial === s,
      });
      const r = await pullRenewalWindows(storage.renewalWindows, selector, byMs, systemClock);
      process.stdout.write(
        `matched ${r.matched} live certificate${r.matched === 1 ? "" : "s"} (${selector.kind} ${selector.value}): renewal window ${r.window.start.toISOString()} to ${r.window.end.toISOString()}\n`,
      );
    });
  });

const rotate = program.command("rotate").description("rotate CA key material");
rotate
  .command("kek")
  .description("re-wrap every key under a new KEK from a new passphrase (also: development mode -> passphrase)")
  .option("--new-passphrase-file <file>", "file holding the new passphrase (mode 0600); default: $FLEETCA_NEW_PASSPHRASE")
  .addOption(configOption())
  .action(async (o: { newPassphraseFile?: string; config?: string }) => {
    const { config } = load(o.config);
    process.stdout.write((await rotateKekCommand(config, o)).join("\n") + "\n");
  });
rotate
  .command("root")
  .description("new root key and certificate, cross-signed by the current root; /roots.pem serves both until `fleetca retire root` (unwraps the root key: needs the passphrase)")
  .addOption(configOption())
  .action(async (o: { config?: string }) => {
    const { config } = load(o.config);
    const r = await rotateRoot(config, passphraseFrom(config), systemClock);
    process.stdout.write(
      [
        `new root ${r.newRootKeyId} (SHA-256 ${r.newRootFingerprint}), cross-signed by root ${r.oldRootKeyId} (cross certificate serial ${r.crossCertificateSerial})`,
        `/roots.pem now serves both roots and the cross certificate; agents pinned to the old root accept the new one at their next publication`,
        `next: "fleetca rotate intermediate" issues from the new root; then "fleetca retire root ${r.oldRootKeyId}" once every host trusts the new root (new hosts pin ${r.newRootFingerprint})`,
      ].join("\n") + "\n",
    );
  });

program
  .command("retire")
  .description("retire CA key material")
  .command("root")
  .description("stop trusting a root: it leaves /roots.pem (refused for the only root, or while the issuing intermediate chains to it)")
  .argument("<keyid>", "the root's key id")
  .addOption(configOption())
  .action(async (keyId: string, o: { config?: string }) => {
    const { config } = load(o.config);
    const r = await withCaStorage(config, {}, (storage) => retireRoot(storage, keyId, systemClock));
    process.stdout.write(`retired root ${r.retired}; trusted roots now: ${r.remaining.join(", ")}\n`);
  });

rotate
  .command("intermediate")
  .description("new intermediate from the root (unwraps the root key: needs the passphrase); a running daemon issues from it within 5 s")
  .option("--migrate-within <duration>", "the old intermediate's certificates are due for renewal within this long (at least 1m)", "24h")
  .addOption(configOption())
  .action(async (o: { migrateWithin: string; config?: string }) => {
    const { config } = load(o.config);
    const migrateWithinMs = o.migrateWithin === undefined ? DEFAULT_MIGRATE_WITHIN_MS : durationArg("--migrate-within")(o.migrateWithin);
    if (migrateWithinMs < MIN_PULL_MS) throw new OperatorError("--migrate-within: must be at least 1m, so the fleet's renewals spread over the window");
    await withCa(config, async (ca) => {
      const r = await rotateIntermediate(ca, config, systemClock, { migrateWithinMs });
      await recordOperatorEvent(ca.storage, "intermediate_rotated", {
        new_intermediate: r.current.keyId,
        previous: r.previousKeyId,
        migrate_within_ms: migrateWithinMs,
        live_certificates: r.migration.matched,
      });
      process.stdout.write(
        [
          `new intermediate key id:       ${r.current.keyId} (valid until ${r.current.notAfter.toISOString()})`,
          `previous intermediate key id:  ${r.previousKeyId} (keeps answering CRL and OCSP for what it issued)`,
          `renewal window for its ${r.migration.matched} live certificate${r.migration.matched === 1 ? "" : "s"}: ${r.migration.window.start.toISOString()} to ${r.migration.window.end.toISOString()}`,
        ].join("\n") + "\n",
      );
    });
  });

program
  .command("revoke-issuer")
  .description("kill switch: the intermediate goes on its root's CRL, issuance from it stops, a fresh one takes over, its fleet renews now (needs the passphrase)")
  .argument("<keyid>", "the intermediate's key id, as `fleetca init` / `rotate intermediate` print it")
  .requiredOption("--reason <reason>", `RFC 5280 reason: ${ISSUER_REVOCATION_REASONS.join(", ")} (or its code)`)
  .addOption(configOption())
  .action(async (keyId: string, o: { reason: string; config?: string }) => {
    const { config } = load(o.config);
    let reason: number;
    try {
      reason = parseIssuerRevocationReason(o.reason);
    } catch (e) {
      throw new OperatorError(`--reason: ${(e as Error).message}`);
    }
    await withCa(config, async (ca) => {
      const r = await revokeIssuer(ca, config, systemClock, keyId, reason);
      await recordOperatorEvent(ca.storage, "issuer_revoked", {
        intermediate: r.revokedKeyId,
        reason,
        root_crl_number: r.rootCrl.crlNumber,
        replacement: r.replacement?.keyId ?? null,
        affected: r.affected,
      });
      process.stdout.write(
        [
          `revoked intermediate ${r.revokedKeyId} at ${r.at.toISOString()} (${o.reason}): on root CRL #${r.rootCrl.crlNumber} of ${r.rootCrl.rootKeyId}`,
          r.replacement ? `new intermediate key id: ${r.replacement.keyId} (issuing now)` : "another intermediate was already issuing; none activated",
          `affected: ${r.affected} live certificate${r.affected === 1 ? "" : "s"}, due for renewal now (window ${r.window.start.toISOString()} to ${r.window.end.toISOString()})`,
        ].join("\n") + "\n",
      );
    });
  });

const crl = program.command("crl").description("certificate revocation lists");
crl
  .command("sign-root")
  .description("re-sign each active root's CRL (unwraps the root key: needs the passphrase); the daemon serves it within a minute")
  .addOption(configOption())
  .action(async (o: { config?: string }) => {
    const { config } = load(o.config);
    await withCa(config, async (ca) => {
      const issuers = await ca.storage.issuers.listIssuers();
      const roots = issuers.filter((i) => i.role === "root" && i.status === "active");
      if (roots.length === 0) throw new OperatorError(`no active root in ${ca.storage.location}`);
      for (const r of roots) {
        const root = await bindIssuer(r.der, await ca.caKeys.load(r.keyName));
        const s = await signRootCrl(root, issuers, ca.storage.crls, systemClock, config.crl.rootValidity);
        process.stdout.write(`signed root CRL #${s.crlNumber} of ${r.keyId}: ${s.entries} revoked intermediate(s), next update ${s.nextUpdate.toISOString()}\n`);
      }
    });
  });

program
  .command("status")
  .description("where the CA lives, its roots and intermediates, CRLs, certificate counts, and whether a daemon runs")
  .addOption(configOption())
  .option("--json", "one JSON object")
  .option("--health", "only whether the running daemon answers /healthz with 200: exit 0, else 1 (a container's health check)")
  .action(async (o: { config?: string; json?: boolean; health?: boolean }) => {
    // --health reads only this replica's serve.json and /healthz.
    const { config, source } = load(o.config);
    if (o.health) {
      const d = await daemonState(config.dataDir);
      const healthy = d.running && d.healthz.startsWith("200 ");
      process.stdout.write(d.running ? `${d.publicUrl}/healthz: ${d.healthz}\n` : `no fleetca serve is running on ${config.dataDir}\n`);
      process.exitCode = healthy ? 0 : 1;
      return;
    }
    const s = await caStatus(config, source, systemClock);
    process.stdout.write(o.json ? `${JSON.stringify(s)}\n` : formatStatus(s));
  });

program
  .command("migrate-store")
  .description("copy this SQLite CA (dataDir) into an empty PostgreSQL database in one transaction, verify the copy, print the config to serve it (stop the daemon first; needs the passphrase)")
  .requiredOption("--to <url>", "the target: postgres://USER@HOST:PORT/DATABASE (no password in it)")
  .option("--password-file <file>", "file holding the database password (first line); default: $PGPASSWORD")
  .option("--json", "one JSON object")
  .addOption(configOption())
  .action(async (o: { to: string; passwordFile?: string; json?: boolean; config?: string }) => {
    const { config } = load(o.config);
    const r = await migrateStore(config, passphraseFrom(config), { to: o.to, ...(o.passwordFile !== undefined && { passwordFile: o.passwordFile }) });
    process.stdout.write(o.json ? `${JSON.stringify(r)}\n` : formatMigrateStore(r));
  });

registerAuditCommands(program, configOption, (path) => load(path));

/** Runs `work` on the CA's storage (no key, no passphrase), closed after. */
async function withCaStorage<T>(config: FleetcaConfig, opts: { readonly?: boolean }, work: (storage: CaStorage) => Promise<T>): Promise<T> {
  const storage = await openCaStorage(config, opts);
  try {
    return await work(storage);
  } finally {
    await storage.close();
  }
}

/** Runs `work` on the opened CA: storage and key store (the passphrase unwraps a key when one is loaded). */
async function withCa<T>(config: FleetcaConfig, work: (ca: OpenedCa) => Promise<T>): Promise<T> {
  const ca = await openCa(config, passphraseFrom(config), { create: false });
  try {
    return await work(ca);
  } finally {
    await ca.storage.close();
  }
}

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
    if (e instanceof NoCaError) {
      // Most often the wrong config, not a missing CA: say which one was read and how to choose.
      const used = configRead ? `config ${configShown(configRead.source)}` : "no config read";
      process.stderr.write(`fleetca: ${e.message} (${used}; pass --config FILE or set FLEETCA_CONFIG for another)\n`);
      process.exit(1);
    }
    if (e instanceof OperatorError || e instanceof CaError) {
      process.stderr.write(`fleetca: ${e.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`fleetca: unexpected error: ${(e as Error).message ?? String(e)}\n`);
    if (process.env.FLEETCA_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  }
}

void main();
