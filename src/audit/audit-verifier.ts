import { createHash } from "node:crypto";
import { DerReader, TAG } from "../x509/der-reader.js";
import { decodeEntry, type AuditEntry } from "./audit-entry.js";
import { leafHash, MerkleFrontier } from "./merkle.js";
import { spkiSha256, verifyTreeHead } from "./tree-head.js";

/** A value now (SQLite answers at once) or later (PostgreSQL). */
type Answer<T> = T | Promise<T>;

/**
 * What `fleetca audit verify` reads: the log, its heads, the trusted keys and the inventory.
 * Either adapter's store can answer: synchronously (SQLite) or with a promise (PostgreSQL,
 * `fleetca migrate-store` verifying its copy).
 */
export interface AuditVerifySource {
  entries(from: number, limit: number): Answer<Array<{ idx: number; at: number; kind: string; serial: string | null; entry: Buffer; leafHash: Buffer }>>;
  treeHeads(): Answer<Array<{ treeSize: number; rootHash: Buffer; timestamp: number; keyName: string; keySpki: Buffer; signature: Buffer }>>;
  /** The audit public keys this CA made (audit_keys rows that match their key files). */
  trustedKeys(): Answer<Map<string, string>>;
  /** The stored certificate for a serial: its DER and status. */
  certificate(serial: string): Answer<{ der: Uint8Array; status: string; issuerKeyId: string } | null>;
  /** Serials of certificates stored at or after `sinceMs` (created_at), to find ones the log never announced. */
  certificatesSince(sinceMs: number): Answer<Iterable<string>>;
}

export interface AuditVerifyReport {
  ok: boolean;
  entries: number;
  treeHeads: number;
  latest: { treeSize: number; rootHash: string; timestamp: number } | null;
  /** Entries after the latest signed head: not yet covered by a signature. */
  unsigned: number;
  /** Intents whose certificate was never stored (a crash or failure between sign and store). */
  unfinishedIntents: string[];
  /** The first failure, naming the entry or tree head; null when the log verifies. */
  failure: { index: number | null; message: string } | null;
}

const PAGE = 10_000;

/**
 * Recomputes the whole log: every entry's bytes against its leaf hash and its place, every
 * signed tree head's root against the leaves (so each head is consistent with the next: both
 * are roots of prefixes of the same leaves) and its signature against the CA's audit keys, and
 * the log against the certificate inventory in both directions. Stops at the first failure.
 */
export async function verifyAuditLog(src: AuditVerifySource): Promise<AuditVerifyReport> {
  const heads = await src.treeHeads();
  const trusted = await src.trustedKeys();
  const frontier = new MerkleFrontier();
  const intents = new Map<string, string>(); // serial → tbs_sha256 of its intent
  const issued = new Set<string>();
  let headAt = 0;
  let firstEntryAt: number | null = null;
  let lastHeadTime = -Infinity;
  const report = (failure: AuditVerifyReport["failure"]): AuditVerifyReport => {
    const latest = headAt > 0 ? heads[headAt - 1]! : null;
    return {
      ok: failure === null,
      entries: frontier.size,
      treeHeads: headAt,
      latest: latest ? { treeSize: latest.treeSize, rootHash: latest.rootHash.toString("hex"), timestamp: latest.timestamp } : null,
      unsigned: frontier.size - (latest?.treeSize ?? 0),
      unfinishedIntents: [...intents.keys()].filter((s) => !issued.has(s)),
      failure,
    };
  };
  const checkHead = (): AuditVerifyReport["failure"] => {
    const h = heads[headAt]!;
    const previous = headAt > 0 ? heads[headAt - 1]!.treeSize : 0;
    const range = `an entry between ${previous} and ${h.treeSize - 1} was altered, removed, reordered or inserted`;
    if (!frontier.root().equals(h.rootHash)) return { index: null, message: `tree head at size ${h.treeSize} does not match the log: ${range}` };
    if (!trusted.has(spkiSha256(h.keySpki))) return { index: null, message: `tree head at size ${h.treeSize} is signed by a key that is not one of this CA's audit keys (${spkiSha256(h.keySpki).slice(0, 16)}…)` };
    if (!verifyTreeHead(h.keySpki, h, h.signature)) return { index: null, message: `tree head at size ${h.treeSize}: bad signature` };
    if (h.timestamp < lastHeadTime) return { index: null, message: `tree head at size ${h.treeSize} is older than the one before it` };
    lastHeadTime = h.timestamp;
    headAt++;
    return null;
  };

  for (let from = 0; ; from += PAGE) {
    const rows = await src.entries(from, PAGE);
    for (const row of rows) {
      const i = frontier.size;
      if (row.idx !== i) return report({ index: i, message: `entry ${i} is missing (the next stored entry is ${row.idx})` });
      if (!leafHash(row.entry).equals(row.leafHash)) return report({ index: i, message: `entry ${i} was modified (its bytes no longer hash to its leaf)` });
      let e: AuditEntry;
      try {
        e = decodeEntry(row.entry);
      } catch {
        return report({ index: i, message: `entry ${i} is not a valid entry` });
      }
      if (e.i !== i) return report({ index: i, message: `entry ${i} says it is entry ${e.i}: moved` });
      if (e.kind !== row.kind || e.t !== row.at) return report({ index: i, message: `entry ${i}: its index columns disagree with its bytes` });
      const problem = await crossCheck(e, src, intents, issued);
      if (problem) return report({ index: i, message: `entry ${i} (${e.kind}${"serial" in e ? ` ${e.serial}` : ""}): ${problem}` });
      firstEntryAt ??= e.t;
      frontier.push(row.leafHash);
      while (headAt < heads.length && heads[headAt]!.treeSize === frontier.size) {
        const f = checkHead();
        if (f) return report(f);
      }
    }
    if (rows.length < PAGE) break;
  }
  if (headAt < heads.length) {
    const h = heads[headAt]!;
    return report({ index: frontier.size, message: `tree head at size ${h.treeSize} covers entries the log no longer has: truncated after entry ${frontier.size - 1}` });
  }
  // Every certificate stored since the log began must have been announced and recorded.
  if (firstEntryAt !== null) {
    for (const serial of await src.certificatesSince(firstEntryAt)) {
      if (!issued.has(serial)) return report({ index: null, message: `certificate ${serial} is stored but the issuance log has no "issued" entry for it` });
    }
  }
  return report(null);
}

async function crossCheck(e: AuditEntry, src: AuditVerifySource, intents: Map<string, string>, issued: Set<string>): Promise<string | null> {
  switch (e.kind) {
    case "intent":
      intents.set(e.serial, e.tbs_sha256);
      return null;
    case "issued": {
      const tbsHash = intents.get(e.serial);
      if (tbsHash === undefined) return "no intent was recorded before it";
      const cert = await src.certificate(e.serial);
      if (!cert) return "the certificate is not in the inventory";
      if (sha256Hex(cert.der) !== e.cert_sha256) return "the stored certificate differs from the one recorded";
      if (sha256Hex(tbsOf(cert.der)) !== tbsHash) return "the certificate's TBS differs from the one its intent announced";
      if (cert.issuerKeyId !== e.issuer) return "the stored certificate names another issuer";
      issued.add(e.serial);
      return null;
    }
    case "revoked": {
      const cert = await src.certificate(e.serial);
      if (!cert) return "the certificate is not in the inventory";
      if (cert.status !== "revoked") return "the inventory does not have it revoked";
      return null;
    }
    default:
      return null;
  }
}

function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** The tbsCertificate's bytes (RFC 5280 §4.1.1.1): what the intent's hash covers. */
function tbsOf(certDer: Uint8Array): Uint8Array {
  const top = new DerReader(certDer);
  const cert = top.inside(top.expect(TAG.SEQUENCE, "Certificate"));
  return cert.whole(cert.expect(TAG.SEQUENCE, "tbsCertificate"));
}
