/**
 * One entry of the issuance log: what happened, on whose word. The leaf of the Merkle tree is the
 * entry's exact bytes (`encodeEntry`): canonical JSON, keys sorted, no whitespace, UTF-8, so a
 * verifier in any language rebuilds the same bytes from the same fields (docs/audit.md).
 *
 * Never in an entry: a token (only its `jti`), a key (only a SHA-256 of a public key), a CSR's or
 * a certificate's bytes (their SHA-256). An entry names the client address the request came from.
 */
export type AuditOperation = "sign" | "renew" | "internal";

export interface IntentFields {
  /** Committed before the signature is made (Boulder's "precertificate" order, record then sign). */
  kind: "intent";
  op: AuditOperation;
  serial: string;
  issuer: string;
  /** SHA-256 of the exact TBSCertificate bytes about to be signed. */
  tbs_sha256: string;
  provisioner: string;
  jti: string | null;
  sans: string[];
  /** SHA-256 of the subject's SubjectPublicKeyInfo: which key the certificate binds. */
  key_sha256: string;
  client: string | null;
  renewed_from: string | null;
}

export interface IssuedFields {
  /** Written in the transaction that stores the certificate: the intent's outcome. */
  kind: "issued";
  op: AuditOperation;
  serial: string;
  issuer: string;
  /** SHA-256 of the certificate DER as handed out. */
  cert_sha256: string;
  provisioner: string;
  jti: string | null;
  sans: string[];
  not_after: string;
}

export interface RevokedFields {
  kind: "revoked";
  serial: string;
  issuer: string;
  reason: number | null;
}

export interface TokenRefusedFields {
  kind: "token_refused";
  /** The provisioner the request named or the token routed to; null when neither is known. */
  provisioner: string | null;
  /** The reason class (token-errors.ts), never anything taken from the token. */
  reason: string;
  client: string | null;
}

export interface KeyLoadedFields {
  kind: "key_loaded";
  key: string;
  role: string;
  spki_sha256: string;
}

export interface ConfigSeenFields {
  /** At every start: the configuration's hash, so a change between starts is on record. */
  kind: "config_seen";
  sha256: string;
  provisioners: string[];
  changed: boolean;
}

export interface EventFields {
  /** Operator actions (rotations, kill switch, renewal windows): a name and flat details. */
  kind: "event";
  event: string;
  details: Record<string, string | number | boolean | null>;
}

export type AuditFields = IntentFields | IssuedFields | RevokedFields | TokenRefusedFields | KeyLoadedFields | ConfigSeenFields | EventFields;

export type AuditKind = AuditFields["kind"];

/** An entry as stored: its place in the log and its time come with it into the leaf. */
export type AuditEntry = AuditFields & {
  /** Format version of the entry bytes. */
  v: 1;
  /** Index of the leaf (0-based): an entry moved to another place no longer verifies. */
  i: number;
  /** Milliseconds since the epoch, UTC. */
  t: number;
};

export function encodeEntry(e: AuditEntry): Buffer {
  return Buffer.from(canonicalJson(e), "utf8");
}

export function decodeEntry(bytes: Uint8Array): AuditEntry {
  const e = JSON.parse(Buffer.from(bytes).toString("utf8")) as AuditEntry;
  if (e === null || typeof e !== "object" || e.v !== 1 || !Number.isSafeInteger(e.i) || !Number.isSafeInteger(e.t) || typeof e.kind !== "string") {
    throw new Error("not an audit entry");
  }
  return e;
}

/** The serial an entry is about, for the log's index columns. */
export function serialOf(f: AuditFields): string | null {
  return "serial" in f ? f.serial : null;
}

export function provisionerOf(f: AuditFields): string | null {
  return "provisioner" in f && typeof f.provisioner === "string" ? f.provisioner : null;
}

export function sansOf(f: AuditFields): string[] {
  return "sans" in f ? f.sans : [];
}

/**
 * JSON with object keys in code-point order and no insignificant whitespace (the subset of RFC
 * 8785 the entries need: strings, safe integers, booleans, null, arrays, flat objects).
 * Python: json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).
 */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new Error(`audit entries hold integers only, got ${v}`);
    return String(v);
  }
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
  }
  throw new Error(`cannot encode ${typeof v} in an audit entry`);
}
