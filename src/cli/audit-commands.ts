import type { Command, Option } from "commander";
import { decodeEntry } from "../audit/audit-entry.js";
import { verifyAuditLog } from "../audit/audit-verifier.js";
import { consistencyProof, inclusionProof, rootOf, verifyConsistency, verifyInclusion } from "../audit/merkle.js";
import { treeHeadJson } from "../audit/tree-head.js";
import type { LoadedConfig } from "../config/load.js";
import { systemClock } from "../core/clock.js";
import { parseDuration } from "../core/duration.js";
import { OperatorError } from "../core/errors.js";
import type { FleetcaConfig } from "../config/schema.js";
import type { CaStorage } from "../storage/ca-storage.js";
import type { StoredAuditEntry } from "../storage/ports.js";
import { openCaStorage } from "./open-ca.js";

/**
 * `fleetca audit …`: the issuance log, read-only (no passphrase: nothing is unwrapped). verify
 * exits 1 naming the first bad entry; prove and consistency print RFC 9162 proofs as JSON that
 * docs/audit.md shows how to check without fleetca.
 */
/** `load`: the CLI's config loader (fleetca.ts), which remembers the file for error hints. */
export function registerAuditCommands(program: Command, configOption: () => Option, load: (path: string | undefined) => LoadedConfig): void {
  const audit = program.command("audit").description("the issuance log: verify it, search it, prove inclusion and consistency");

  audit
    .command("verify")
    .description("recompute every entry and tree head, check every signature and the inventory; exit 1 naming the first bad entry")
    .option("--json", "one JSON object")
    .addOption(configOption())
    .action(async (o: { json?: boolean; config?: string }) => {
      const { config } = load(o.config);
      await withStorage(config, async (storage) => {
        const r = await verifyAuditLog(storage.auditVerifySource());
        if (o.json) process.stdout.write(JSON.stringify(r) + "\n");
        else {
          const head = r.latest ? `latest tree head: size ${r.latest.treeSize}, root ${r.latest.rootHash}, ${new Date(r.latest.timestamp).toISOString()}` : "no signed tree head yet";
          if (r.ok) process.stdout.write(`issuance log OK: ${r.entries} entries, ${r.treeHeads} signed tree heads verified; ${head}\n`);
          if (r.unsigned > 0) process.stdout.write(`${r.unsigned} entries after the latest signed tree head (not yet signed)\n`);
          if (r.unfinishedIntents.length > 0) process.stdout.write(`${r.unfinishedIntents.length} intents without a stored certificate (signing or storing did not finish): ${r.unfinishedIntents.slice(0, 10).join(", ")}${r.unfinishedIntents.length > 10 ? ", …" : ""}\n`);
        }
        if (!r.ok) {
          if (!o.json) process.stderr.write(`fleetca: issuance log FAILED: ${r.failure!.message}\n`);
          process.exitCode = 1;
        }
      });
    });

  audit
    .command("query")
    .description("entries about a serial, a provisioner, a subject (SAN) or since a time, in log order")
    .option("--serial <serial>", "one certificate's entries")
    .option("--provisioner <name>", "entries naming this provisioner")
    .option("--subject <san>", "entries whose SANs include this one (exactly)")
    .option("--since <time>", "entries at or after this time: ISO 8601, or a duration back from now (e.g. 24h)")
    .option("--limit <n>", "at most this many entries", "1000")
    .option("--json", "one JSON object per line")
    .addOption(configOption())
    .action(async (o: { serial?: string; provisioner?: string; subject?: string; since?: string; limit: string; json?: boolean; config?: string }) => {
      const { config } = load(o.config);
      if (o.serial === undefined && o.provisioner === undefined && o.subject === undefined && o.since === undefined) {
        throw new OperatorError("audit query needs --serial, --provisioner, --subject or --since");
      }
      const limit = Number(o.limit);
      if (!Number.isSafeInteger(limit) || limit < 1) throw new OperatorError(`--limit: expected a positive integer, got ${o.limit}`);
      await withStorage(config, async (storage) => {
        const rows = await storage.audit.query(
          {
            ...(o.serial !== undefined && { serial: o.serial.toLowerCase() }),
            ...(o.provisioner !== undefined && { provisioner: o.provisioner }),
            ...(o.subject !== undefined && { subject: o.subject }),
            ...(o.since !== undefined && { sinceMs: sinceArg(o.since) }),
          },
          // One more than asked: whether the limit cut the answer, which the operator is told.
          limit + 1,
        );
        const more = rows.length > limit;
        if (more) rows.length = limit;
        for (const row of rows) {
          const entry = decodeEntry(row.entry);
          const unfinished = entry.kind === "intent" && !(await storage.audit.entriesForSerial(entry.serial)).some((r) => r.kind === "issued");
          if (o.json) process.stdout.write(JSON.stringify({ ...entry, ...(unfinished && { unfinished: true }) }) + "\n");
          else process.stdout.write(formatEntry(row, entry, unfinished) + "\n");
        }
        if (!o.json && rows.length === 0) process.stdout.write("no entries\n");
        // On stderr, so --json output stays one entry per line; not an error (exit 0).
        if (more) process.stderr.write(`fleetca: showing the first ${limit} matching entries; more match: raise --limit or narrow the query\n`);
      });
    });

  audit
    .command("prove")
    .description("inclusion proof (RFC 9162 §2.1.3) of a certificate's issuance-log entry against the latest signed tree head, as JSON")
    .argument("<serial>", "serial number, hex as `fleetca list` prints it")
    .addOption(configOption())
    .action(async (serial: string, o: { config?: string }) => {
      const { config } = load(o.config);
      await withStorage(config, async (storage) => {
        const rows = await storage.audit.entriesForSerial(serial.toLowerCase());
        const row = rows.find((r) => r.kind === "issued") ?? rows.find((r) => r.kind === "intent");
        if (!row) throw new OperatorError(`the issuance log has no entry for serial ${serial}`);
        const head = await storage.audit.latestTreeHead();
        if (!head || head.treeSize <= row.idx) throw new OperatorError(`entry ${row.idx} is not yet covered by a signed tree head (the daemon signs one every audit.treeHeadInterval); try again later`);
        const leaves = await storage.audit.leafHashes(0, head.treeSize);
        const path = inclusionProof(leaves, row.idx, head.treeSize);
        // Checked before it is printed: a proof this command prints always verifies against the head.
        if (!verifyInclusion(row.leafHash, row.idx, head.treeSize, path, head.rootHash)) throw new Error("inclusion proof does not verify against the tree head");
        process.stdout.write(
          JSON.stringify(
            {
              serial: serial.toLowerCase(),
              kind: row.kind,
              leaf_index: row.idx,
              tree_size: head.treeSize,
              entry: row.entry.toString("utf8"),
              leaf_hash: row.leafHash.toString("hex"),
              audit_path: path.map((p) => p.toString("hex")),
              tree_head: treeHeadJson(head),
            },
            null,
            2,
          ) + "\n",
        );
      });
    });

  audit
    .command("consistency")
    .description("consistency proof (RFC 9162 §2.1.4) that the log's first N entries are a prefix of its first M, as JSON")
    .argument("<n>", "the smaller tree size")
    .argument("<m>", "the larger tree size")
    .addOption(configOption())
    .action(async (nArg: string, mArg: string, o: { config?: string }) => {
      const { config } = load(o.config);
      const n = Number(nArg);
      const m = Number(mArg);
      await withStorage(config, async (storage) => {
        const size = await storage.audit.size();
        if (!Number.isSafeInteger(n) || !Number.isSafeInteger(m) || n < 1 || n > m || m > size) {
          throw new OperatorError(`expected tree sizes 1 ≤ N ≤ M ≤ ${size} (the log's size), got ${nArg} ${mArg}`);
        }
        const leaves = await storage.audit.leafHashes(0, m);
        const proof = consistencyProof(leaves, n, m);
        const first = rootOf(leaves, 0, n);
        const second = rootOf(leaves, 0, m);
        if (!verifyConsistency(n, m, proof, first, second)) throw new Error("consistency proof does not verify");
        const heads = new Map((await storage.audit.treeHeads()).map((h) => [h.treeSize, h]));
        const signed = (k: number) => {
          const h = heads.get(k);
          return h ? treeHeadJson(h) : null;
        };
        process.stdout.write(
          JSON.stringify(
            {
              first: n,
              second: m,
              first_root: first.toString("hex"),
              second_root: second.toString("hex"),
              proof: proof.map((p) => p.toString("hex")),
              first_tree_head: signed(n),
              second_tree_head: signed(m),
            },
            null,
            2,
          ) + "\n",
        );
      });
    });
}

/** Runs `f` on the CA's storage, read-only where the adapter allows (SQLite's file), closed after. */
async function withStorage(config: FleetcaConfig, f: (storage: CaStorage) => Promise<void>): Promise<void> {
  const storage = await openCaStorage(config, { readonly: true });
  try {
    await f(storage);
  } finally {
    await storage.close();
  }
}

function sinceArg(v: string): number {
  if (/^\d+(ms|s|m|h|d)$/.test(v)) return systemClock.now().getTime() - parseDuration(v);
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new OperatorError(`--since: expected an ISO 8601 time or a duration like 24h, got ${v}`);
  return t;
}

function formatEntry(row: StoredAuditEntry, e: ReturnType<typeof decodeEntry>, unfinished: boolean): string {
  const { v: _v, i: _i, t: _t, kind: _k, ...fields } = e as unknown as Record<string, unknown>;
  const details = Object.entries(fields)
    .filter(([, val]) => val !== null && !(Array.isArray(val) && val.length === 0))
    .map(([k, val]) => `${k}=${Array.isArray(val) ? val.join(",") : typeof val === "object" ? JSON.stringify(val) : String(val)}`)
    .join(" ");
  return `${String(row.idx).padStart(6)}  ${new Date(row.at).toISOString()}  ${e.kind.padEnd(13)}  ${details}${unfinished ? "  UNFINISHED (no certificate stored)" : ""}`;
}
