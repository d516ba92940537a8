import type { AuditFields, IntentFields, IssuedFields } from "../audit/audit-entry.js";
import type { Sans } from "../core/sans.js";
import type { SerialHex } from "../core/serial.js";
import type { RevocationReason } from "../core/revocation-reason.js";

/**
 * Narrow storage interfaces, one per consumer (DESIGN habit 3, Boulder sa/proto/subsets.go).
 * storage/sqlite implements them all; tests implement only the one they stand behind.
 *
 * The request-path ports (IssuanceStore, CertificateStatusLookup, CertificateLookup.getCertificate,
 * RevocationStore, RenewalInfoLookup) and by now every other port return promises, so an
 * asynchronous driver (PostgreSQL, issue 17, storage/postgres) can implement them. SQLite answers
 * them through thin facades over the synchronous SqliteStore (sqlite/sqlite-request-ports.ts,
 * sqlite-revocation-ports.ts, sqlite-inventory-ports.ts, sqlite-audit-log-port.ts,
 * sqlite-operations-ports.ts) or with classes that are asynchronous themselves (sqlite-crl-catalog.ts,
 * sqlite-ocsp-store.ts, sqlite-rate-limits.ts, sqlite-renewal-windows.ts, sqlite-crl-leases.ts).
 */

export type CertificateStatus = "valid" | "revoked";

export interface CertificateRecord {
  serial: SerialHex;
  issuerKeyId: string;
  sans: Sans;
  subjectCommonName: string | null;
  notBefore: Date;
  notAfter: Date;
  der: Uint8Array;
  provisioner: string;
  tokenId: string | null;
  status: CertificateStatus;
  revokedAt: Date | null;
  /** RFC 5280 §5.3.1 CRLReason code. */
  revocationReason: number | null;
  createdAt: Date;
  /** The certificate this one renewed (POST /v1/renew), so a renewal chain can be followed. */
  renewedFrom: SerialHex | null;
  /** The CRL partition its CRL distribution point names; null when it names the issuer's full CRL. */
  crlShard: number | null;
  /**
   * Lineage (migration v13): the renewal that replaced this certificate, the serial of the first
   * certificate of its chain of renewals, and when the token that started the chain was verified.
   * Absent on a record being made: a new certificate starts its own lineage at createdAt.
   */
  supersededBy?: SerialHex | null;
  lineage?: SerialHex;
  attestedAt?: Date;
  /** The platform instance the lineage is bound to (a jwt provisioner's instanceClaim), if any. */
  instance?: string | null;
}

export interface TokenUse {
  /** Provisioner-scoped token id: `${provisioner}:${jti}`. */
  tokenId: string;
  provisioner: string;
  /** Until when the token itself could still verify; the row may be pruned after this. */
  expiresAt: Date;
}

/**
 * Whose Idempotency-Key it is: the verified token's provisioner and subject. A key is a name the
 * client picks (a UUID, or "retry-1"), so it only means something within one identity: two
 * clients that pick the same key must not see each other's certificate or collide.
 */
export interface IdempotencyScope {
  provisioner: string;
  subject: string;
}

export interface IdempotencyRecord extends IdempotencyScope {
  key: string;
  requestHash: string;
  tokenId: string | null;
  serial: SerialHex;
  expiresAt: Date;
}

export interface IssuanceCommit {
  certificate: CertificateRecord;
  tokenUse?: TokenUse;
  /**
   * Stored unless its scope already holds a live record of the key ("idempotency_conflict"); an
   * expired one in its place is replaced, as findIdempotency already treats it as absent.
   */
  idempotency?: IdempotencyRecord;
  /** The issuance log's "issued" entry, written in the same transaction as the certificate. */
  audit?: IssuedFields;
  /**
   * A renewal: the certificate this one replaces, marked superseded in the same transaction. If
   * another renewal superseded it first, nothing is stored ("superseded").
   */
  supersedes?: SerialHex;
  /**
   * A new attestation of an instance (sign with an instance): the instance's other live
   * certificates of this provisioner are revoked as superseded in the same transaction.
   */
  retireInstance?: boolean;
  /**
   * An internal certificate that replaces every earlier one of its purpose (the API's serving
   * certificate, re-issued at each start and renewal): they are marked superseded by it. Only
   * those of its own `instance` (a replica's, on PostgreSQL) or of none (one serving process, or
   * issued before replicas named theirs): replicas' serving certificates live side by side.
   */
  supersedesPurpose?: boolean;
}

export type CommitOutcome = "committed" | "replayed" | "serial_collision" | "idempotency_conflict" | "superseded";

/** What the RA needs: check a token, find a retried request, and commit an issuance atomically. */
export interface IssuanceStore {
  isTokenUsed(tokenId: string): Promise<boolean>;
  /** The live (unexpired at `now`) record of `key` in `scope`; an expired, not yet pruned one is as good as absent. */
  findIdempotency(scope: IdempotencyScope, key: string, now: Date): Promise<IdempotencyRecord | null>;
  getCertificate(serial: SerialHex): Promise<CertificateRecord | null>;
  /**
   * Durably commits the certificate, the token use and the idempotency key together, or nothing.
   * Resolves only after the write is on disk (store before hand-out, DESIGN habit 2); async so an
   * implementation can batch many commits into one fsync (sqlite/issuance-group-commit.ts), with
   * each outcome what the commit would get alone. Rejects with CaError "unavailable" when the
   * store cannot commit; then nothing of it is stored (the token stays unused).
   */
  commitIssuance(c: IssuanceCommit): Promise<CommitOutcome>;
  /**
   * Records the intent to sign (the serial and the hash of the exact TBS bytes) before the
   * signature exists (record before sign): a signature the CA made is always accounted for. It is
   * committed (safe from a crash of the process) when this resolves, and on disk at the latest
   * with the certificate's own durable commit, which a hand-out always waits for. "serial_collision"
   * when the serial was announced or stored before: draw another.
   */
  recordIntent(intent: IntentFields, at: Date): Promise<"committed" | "serial_collision">;
  /** Appends one issuance-log entry in the next group commit; resolves once it is committed (fsynced with the next durable commit). */
  recordAudit(fields: AuditFields, at: Date): Promise<void>;
}

/** What OCSP reads of a certificate for every answer it signs (RFC 6960 §2.2): narrow, as it is per request. */
export interface CertificateStatusRecord {
  issuerKeyId: string;
  status: CertificateStatus;
  revokedAt: Date | null;
  revocationReason: number | null;
}

export interface CertificateStatusLookup {
  certificateStatus(serial: SerialHex): Promise<CertificateStatusRecord | null>;
}

/**
 * What client-certificate authentication needs: the stored record for a presented serial, and
 * the issuers, to check the presented bytes are ours.
 */
export interface CertificateLookup {
  getCertificate(serial: SerialHex): Promise<CertificateRecord | null>;
  /** Read on a handshake that names an intermediate ClientAuthenticator has not cached (after a rotation or a revoke-issuer). */
  listIssuers(): Promise<IssuerRecord[]>;
}

export type RevocationOutcome =
  | { outcome: "revoked"; revokedAt: Date; reason: RevocationReason }
  /** Revoked earlier: the original time and reason stand (revocation is idempotent and final). */
  | { outcome: "already_revoked"; revokedAt: Date; reason: number | null }
  | { outcome: "not_found" };

/** What the revoke service needs: read a record, and flip it to revoked once, atomically. */
export interface RevocationStore {
  getCertificate(serial: SerialHex): Promise<CertificateRecord | null>;
  /** Marks the certificate revoked unless it already is; the first revocation's time and reason win. */
  revokeCertificate(serial: SerialHex, revokedAt: Date, reason: RevocationReason): Promise<RevocationOutcome>;
}

/** One revocation as the revocation log recorded it, in commit order. */
export interface RevocationEvent {
  seq: number;
  serial: SerialHex;
  issuerKeyId: string;
  revokedAt: Date;
  reason: number | null;
  /** The certificate's CRL partition (null: only the issuer's full CRL lists it). */
  crlShard: number | null;
}

/** What the revocation feed follows: revocations committed after a sequence number. */
export interface RevocationLog {
  latestRevocationSeq(): Promise<number>;
  /** Up to `limit` events with seq above `seq`, in seq order. */
  revocationsAfter(seq: number, limit: number): Promise<RevocationEvent[]>;
}

/**
 * One CRL entry (RFC 5280 §5.1.2.6) as a caller holds it: serial (lower-case hex), revocation
 * time (ms since the epoch), RFC 5280 §5.3.1 reason code or null. The root CRL's few entries
 * come this way; a store hands the builder RevokedPage bytes instead (storage/revoked-page.ts
 * packs rows into one).
 */
export type RevokedRow = readonly [serial: string, revokedAtMs: number, reason: number | null];

/**
 * Up to a page of CRL entries in ascending serial order, packed into one byte string so a store
 * hands over a page as one value (SQL can build it: no per-row objects, which cost ~1.3 µs a row
 * in better-sqlite3). Each entry is
 *   1 octet   n, the serial's magnitude length in octets (1–20, RFC 5280 §4.1.2.2)
 *   n octets  the magnitude: the store's lower-case hex serial, decoded (no sign octet)
 *   8 octets  revocation time in whole seconds since the epoch (floor of ms / 1000), big-endian,
 *             two's complement
 *   1 octet   reason code (RFC 5280 §5.3.1), 0xff for none
 * which is also EntriesDigest's record (revocation/crl/crl-encoder.ts) once an unspecified (0)
 * reason reads 0xff: the builder hashes whole pages, the walk re-derives the records from the DER.
 */
export interface RevokedPage {
  /** Entries in `bytes`. */
  readonly count: number;
  /** The last entry's serial as the store keeps it (keyset pagination resumes after it); null when empty. */
  readonly lastSerial: SerialHex | null;
  /** The packed entries; the builder may rewrite reason octets in place (0 → 0xff). */
  readonly bytes: Uint8Array;
}

/**
 * Which CRL of an issuer: its full CRL (every revoked certificate it issued, shard null), or one
 * partition (shard n: the certificates whose CRL distribution point names `/crl/<kid>/<n>`).
 */
export interface CrlScope {
  issuerKeyId: string;
  shard: number | null;
}

/** The last CRL signed for one scope, as the store keeps it: the bytes served are these bytes. */
export interface StoredCrl extends CrlScope {
  /** RFC 5280 §5.2.3: only ever goes up for a scope, across restarts. */
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Entries listed; -1 when unknown (a CRL carried over from before migration v4). */
  entries: number;
  /** The revocation log position its content was read after (RevocationLog seq); -1 when unknown. */
  revocationSeq: number;
  der: Uint8Array;
}

/** What a CRL publisher needs: the entries to list, page by page, and its own last CRL, kept monotonic. */
export interface CrlStore {
  /**
   * Up to `limit` of the scope's revoked certificates whose notAfter is after `now`, in serial
   * order (the store's lower-case hex), starting after `afterSerial` (keyset pagination, so a
   * million entries are read in bounded memory and the event loop gets turns between pages),
   * packed (RevokedPage). A store that can only read rows packs them with packRevokedRows.
   */
  revokedPage(scope: CrlScope, now: Date, afterSerial: SerialHex | null, limit: number): Promise<RevokedPage>;
  /** How many entries revokedPage would list in all for this scope at `now`. */
  countRevoked(scope: CrlScope, now: Date): Promise<number>;
  getCrl(scope: CrlScope): Promise<StoredCrl | null>;
  /** The stored CRL's number and entry count without reading the CRL itself (null when none). */
  crlSummaryOf(scope: CrlScope): Promise<{ crlNumber: number; entries: number } | null>;
  /**
   * Durably stores `s` as the scope's current CRL only if its number is above the stored one
   * (or none is stored). False when a CRL with that number or a higher one is already there.
   * Asynchronous: a CRL of tens of megabytes is written in slices, between which the process
   * keeps answering requests.
   */
  saveCrl(s: StoredCrl): Promise<boolean>;
  latestRevocationSeq(): Promise<number>;
  /** The scopes of this issuer (shard, or null for none) that saw a revocation after `seq`. */
  shardsRevokedAfter(issuerKeyId: string, seq: number): Promise<Array<number | null>>;
  /** Every partition this issuer ever assigned (see registerCrlShards). */
  crlShards(issuerKeyId: string): Promise<number[]>;
  /** Records partitions before any certificate is assigned to them; resolves once committed. */
  registerCrlShards(issuerKeyId: string, shards: readonly number[]): Promise<void>;
}

export type IssuerRole = "root" | "intermediate";

export interface IssuerRecord {
  keyId: string;
  role: IssuerRole;
  keyName: string;
  parentKeyId: string | null;
  der: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  status: "active" | "retired";
  createdAt: Date;
  /** Set when the issuer's parent revoked it: its root's CRL lists it (RFC 5280 §5). */
  revokedAt: Date | null;
  revocationReason: number | null;
  /**
   * When this intermediate became the issuing one; null for a prepared one not switched to yet,
   * and for roots. The current issuer is the valid, unrevoked intermediate activated last.
   */
  activatedAt: Date | null;
}

export interface IssuerStore {
  /** Every issuer row, roots included, oldest first. */
  listIssuers(): Promise<IssuerRecord[]>;
  addIssuer(r: IssuerRecord): Promise<void>;
  /** Adds them all in one transaction, or none (init: a root without its intermediate is no CA). */
  addIssuers(rs: readonly IssuerRecord[]): Promise<void>;
}

export interface InventoryQuery {
  expiringBefore?: Date;
  /** Only revoked certificates when true. */
  revoked?: boolean;
  /** Hide certificates whose notAfter has passed (unless asking for revoked). */
  notExpiredAt?: Date;
  /** Also list certificates a renewal (or a newer serving certificate) superseded. */
  includeSuperseded?: boolean;
  limit?: number;
}

/** Certificate counts for `fleetca status`, judged at one moment. */
export interface CertificateCounts {
  /** Valid and unexpired. */
  valid: number;
  /** Of those, expiring within the next 24 h. */
  expiringWithin24h: number;
  revoked: number;
  expired: number;
}

/** One stored CRL as `fleetca status` lists it. */
export interface CrlSummary {
  issuerKeyId: string;
  /** null: the issuer's full CRL; n: partition n. */
  shard: number | null;
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: number;
}

export interface InventorySummary {
  /** Certificates of every provisioner but the internal ones. */
  fleet: CertificateCounts;
  /** The CA's own (its API serving certificates). */
  internal: CertificateCounts;
  crls: CrlSummary[];
}

export interface InventoryStore {
  listCertificates(q: InventoryQuery): Promise<CertificateRecord[]>;
  /** What `fleetca status` counts, from one read (SQLite: one connection; PostgreSQL: one statement per part). */
  inventorySummary(now: Date, internalProvisioners: readonly string[]): Promise<InventorySummary>;
}

export interface ProvisionerKeyRecord {
  name: string;
  kid: string;
  publicJwk: Record<string, unknown>;
  createdAt: Date;
}

export interface ProvisionerKeyStore {
  getProvisionerKey(name: string): Promise<ProvisionerKeyRecord | null>;
  addProvisionerKey(r: ProvisionerKeyRecord): Promise<void>;
}

export interface Housekeeping {
  /** Drops used-token rows and idempotency keys that can no longer matter. Returns rows removed. */
  pruneExpired(now: Date): Promise<number>;
}

export interface HealthProbe {
  /**
   * Whether the database answers a trivial query: true, or false when it does not. A caller
   * treats a rejection as false too, and bounds its wait (api/health-check.ts), as a database
   * that hangs must not hang /healthz.
   */
  ping(): Promise<boolean>;
}

/**
 * A pre-signed OCSP answer (a whole DER OCSPResponse) for one certificate's SHA-1 CertID, stored so
 * every worker, and later every replica, serves the same bytes (as cfssl's and Boulder's OCSP
 * tables do). `status` is the inventory status it was signed for: a reader serves the row only
 * while the inventory still says the same, so a revocation can never be answered "good".
 */
export interface StoredOcspAnswer {
  issuerKeyId: string;
  serial: SerialHex;
  status: CertificateStatus;
  der: Uint8Array;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Half-way through the validity (DESIGN habit 8): after this the answer is signed again. */
  refreshAt: Date;
}

/** A certificate the OCSP pre-signer has to (re-)sign an answer for. */
export interface OcspPresignCandidate {
  serial: SerialHex;
  status: CertificateStatus;
  revokedAt: Date | null;
  reason: number | null;
}

/** What the OCSP responder and its background pre-signer need. */
export interface OcspAnswerStore {
  getOcspAnswer(issuerKeyId: string, serial: SerialHex): Promise<StoredOcspAnswer | null>;
  /** Stores (replacing) the answers in one transaction. */
  saveOcspAnswers(answers: StoredOcspAnswer[]): Promise<void>;
  /**
   * The issuer's certificates unexpired at `now`, with serial after `afterSerial` (serial order,
   * at most `limit`), whose stored answer is missing, due for refresh at `now`, or signed for
   * another status than the inventory's.
   */
  certificatesToPresign(issuerKeyId: string, now: Date, afterSerial: string, limit: number): Promise<OcspPresignCandidate[]>;
  /** Drops answers past their nextUpdate (their certificate expired or nobody refreshed them). */
  deleteExpiredOcspAnswers(now: Date): Promise<number>;
}

/** A stored CRL's row: what is known of it without reading its bytes. */
export interface StoredCrlHead extends CrlScope {
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Octets of its DER. */
  derLength: number;
}

/**
 * The stored CRLs as of one moment (a read transaction), for sending a large CRL a chunk at a
 * time without holding it in memory: every chunk read belongs to the CRL `head` named, whatever
 * is committed meanwhile. The snapshot is held until release() (or close()); after that, chunks
 * are still read by the write they belong to, and reading one that a newer CRL's write has
 * removed meanwhile throws: a reader then gets an error, never bytes of two CRLs.
 *
 * Asynchronous throughout: over PostgreSQL a snapshot is a REPEATABLE READ transaction held on
 * one pooled client, each read a round trip, release() its COMMIT and close() the client's return
 * to the pool. Calls on one snapshot are not to overlap (one client runs one query at a time):
 * a caller awaits each before the next.
 */
export interface CrlSnapshot {
  /** The scope's stored CRL in this snapshot; null when none. */
  head(scope: CrlScope): Promise<StoredCrlHead | null>;
  /** Reads `head`'s DER in order, one stored chunk per call; null after the last. */
  reader(head: StoredCrlHead): { next(): Promise<Uint8Array | null> };
  /** Ends the read transaction (the database may then reclaim what it pinned); reads go on by write. */
  release(): Promise<void>;
  /** Releases and frees the snapshot; idempotent. */
  close(): Promise<void>;
}

/**
 * What CRLs exist, in two queries whatever the number of partitions: for a process that serves
 * CRLs another process signs (a public worker) and checks for new ones every second.
 */
export interface CrlCatalog {
  /** Every stored CRL's row. */
  storedCrls(): Promise<StoredCrlHead[]>;
  /** Every partition ever registered (crl_shards), published or not. */
  registeredShards(): Promise<Array<{ issuerKeyId: string; shard: number }>>;
  /**
   * The stored CRL of a scope, read a chunk at a time with a yield between chunks, so a reader
   * that serves requests is never stalled by a large CRL; null when none is stored, or when a
   * newer write replaced it meanwhile (read again).
   */
  readCrl(scope: CrlScope): Promise<StoredCrl | null>;
  /** A snapshot of the stored CRLs to send large ones from (see CrlSnapshot); close it. */
  openSnapshot(): Promise<CrlSnapshot>;
}

/** What a renewal-window override (`fleetca renew-window`) names: an issuer, a provisioner, or one certificate. */
export type RenewalSelectorKind = "issuer" | "provisioner" | "serial";

/**
 * One `fleetca renew-window` command as stored: a single row however many certificates it names
 * (a fleet may be 100,000 certificates), applied when a certificate's renewal info is read. It
 * applies only to certificates issued before `createdAt`: their replacements get the normal window.
 */
export interface RenewalWindowOverride {
  kind: RenewalSelectorKind;
  /** Issuer key id (lower-case hex SKI), provisioner name, or serial (lower-case hex). */
  value: string;
  start: Date;
  /** After `start` (RFC 9773 §4.2: a window whose end does not follow its start is invalid). */
  end: Date;
  createdAt: Date;
}

/** A certificate as its renewal info needs it, with the most urgent override that names it. */
export interface RenewalSubject {
  serial: SerialHex;
  issuerKeyId: string;
  provisioner: string;
  notBefore: Date;
  notAfter: Date;
  status: CertificateStatus;
  createdAt: Date;
  /**
   * Of the overrides naming this certificate (by issuer, provisioner or serial) recorded after it
   * was issued, the one whose window ends first; null when none.
   */
  override: RenewalWindowOverride | null;
}

/** What GET /v1/renewal-info reads, per request: one certificate and its override, by index. */
export interface RenewalInfoLookup {
  renewalSubject(serial: SerialHex): Promise<RenewalSubject | null>;
}

/** What `fleetca renew-window` needs: record one override, counting the live certificates it names. */
export interface RenewalWindowStore {
  /**
   * Stores `o` and returns how many certificates it names that are valid (not revoked) and
   * inside their validity at `now`, counted in the same transaction as the write.
   */
  recordRenewalOverride(o: RenewalWindowOverride, now: Date): Promise<{ matched: number }>;
}

/**
 * What rotating an intermediate and the kill switch change about an issuer, and what the daemon
 * reads to decide which intermediates still answer for their certificates (CRL, OCSP).
 */
export interface IssuerLifecycleStore {
  /** Makes a prepared intermediate the issuing one (`activatedAt`); false when no such unrevoked intermediate exists. */
  activateIntermediate(keyId: string, at: Date): Promise<boolean>;
  /** Marks an issuer revoked by its parent (it goes on the root's CRL); false when it already was, or is unknown. */
  revokeIssuer(keyId: string, at: Date, reason: number): Promise<boolean>;
  /** The latest notAfter among the certificates this issuer signed; null when it signed none. */
  lastCertificateExpiry(issuerKeyId: string): Promise<Date | null>;
  /** Certificates of this issuer that are valid (not revoked) and unexpired at `now`. */
  countLiveCertificates(issuerKeyId: string, now: Date): Promise<number>;
  /**
   * The operator's change of which intermediate issues (`fleetca rotate intermediate`, the kill
   * switch `fleetca revoke-issuer`), in ONE transaction with the renewal window it gives the
   * affected fleet: a crash or a lost connection leaves either no change or all of it, never a
   * revoked intermediate without a successor or a switch without its migration window.
   */
  changeIssuers(change: IssuerChange, at: Date): Promise<IssuerChangeOutcome>;
  /** A new root and the cross certificate its predecessor signed for it (`fleetca rotate root`), together. */
  addRootWithCross(root: IssuerRecord, cross: CrossCertificateRecord): Promise<void>;
  /** Marks an active root retired: it leaves /roots.pem (with the cross certificates naming it); false when it was not active. */
  retireRoot(keyId: string): Promise<boolean>;
}

/** A cross certificate between two roots (a root rotation, RFC 4210 §4.4 "NewWithOld"). */
export interface CrossCertificateRecord {
  subjectKeyId: string;
  issuerKeyId: string;
  der: Uint8Array;
  notAfter: Date;
  createdAt: Date;
}

/** See IssuerLifecycleStore.changeIssuers. */
export interface IssuerChange {
  /** The intermediate to mark revoked by its root (it goes on the root's CRL, RFC 5280 §5). */
  revoke?: { keyId: string; reason: number };
  /** The prepared intermediate to make the issuing one. */
  activate?: string;
  /** The renewal window (RFC 9773) for the certificates the change moves. */
  renewalOverride: RenewalWindowOverride;
}

export type IssuerChangeOutcome =
  | { outcome: "changed"; matched: number }
  /** Nothing was changed: the intermediate to revoke is unknown or was revoked meanwhile. */
  | { outcome: "revoke_refused" }
  /** Nothing was changed: the intermediate to activate is unknown, revoked or retired. */
  | { outcome: "activate_refused" };

/** One issuance-log entry as stored (migration v8): its leaf index, time, and the encoded entry and its RFC 9162 §2.1.1 leaf hash. */
export interface StoredAuditEntry {
  idx: number;
  /** ms since the epoch. */
  at: number;
  kind: string;
  serial: string | null;
  provisioner: string | null;
  entry: Buffer;
  leafHash: Buffer;
}

/** A signed tree head over the log's first `treeSize` entries, and the audit key that signed it. */
export interface StoredTreeHead {
  treeSize: number;
  rootHash: Buffer;
  /** ms since the epoch. */
  timestamp: number;
  keyName: string;
  keySpki: Buffer;
  signature: Buffer;
}

/** An audit key (the tree heads' signer) as recorded: the last one recorded is the one in use. */
export interface AuditKeyRecord {
  keyName: string;
  keySpki: Buffer;
  /** ms since the epoch. */
  createdAt: number;
}

/** What `fleetca audit list` filters on; every criterion given must match. */
export interface AuditQuery {
  serial?: string;
  provisioner?: string;
  subject?: string;
  sinceMs?: number;
  kind?: string;
}

/**
 * What the daemon reads and writes of the issuance log outside the issuance path (which appends
 * through IssuanceStore): its start record (audit/start-record.ts), the audit key
 * (audit/audit-key.ts), the tree heads it signs (audit/tree-head-publisher.ts) and serves
 * (audit/tree-head-view.ts); and what the CLI's `fleetca audit` commands read of it.
 */
export interface AuditLogStore {
  /**
   * Appends one entry at time `at` and resolves to its leaf index: the next one, assigned in the
   * write transaction, so whatever process appends, the log stays gapless.
   */
  append(fields: AuditFields, at: Date): Promise<number>;
  /** The encoded entry (as `entry` of StoredAuditEntry) of the newest entry of one kind; null when none. */
  lastEntryOfKind(kind: string): Promise<Buffer | null>;
  /** Entries in the log (the next leaf index). */
  size(): Promise<number>;
  /** Leaf hashes of entries [from, to) in index order; fewer than asked only if the log has a gap. */
  leafHashes(from: number, to: number): Promise<Buffer[]>;
  /** The head over the most entries; null before the first. */
  latestTreeHead(): Promise<StoredTreeHead | null>;
  addTreeHead(h: StoredTreeHead): Promise<void>;
  /** Every audit key recorded, oldest first. */
  auditKeys(): Promise<AuditKeyRecord[]>;
  addAuditKey(k: AuditKeyRecord): Promise<void>;
  /** Entries [from, from + limit) in index order. */
  entries(from: number, limit: number): Promise<StoredAuditEntry[]>;
  /** Every entry naming this serial, in index order. */
  entriesForSerial(serial: string): Promise<StoredAuditEntry[]>;
  /** Entries matching every given field, in index order, at most `limit`. */
  query(q: AuditQuery, limit: number): Promise<StoredAuditEntry[]>;
  /** Every signed tree head, smallest first. */
  treeHeads(): Promise<StoredTreeHead[]>;
}

/** A token bucket as stored: what it held at `at` (negative: owed, see registration/token-buckets.ts). */
export interface StoredBucket {
  tokens: number;
  at: Date;
  /** When refilling makes it full again; after that the row says nothing a missing row does not. */
  fullAt: Date;
}

/** Which bucket: the limit's name and what it counts by (a provisioner, an address, …). */
export interface BucketKey {
  limit: string;
  key: string;
}

/**
 * What the rate limits (registration/rate-limits.ts) keep in the database, so that they hold
 * across restarts and are shared by every process on the database (API workers, later replicas).
 */
export interface RateLimitStore {
  /** The bucket as last merged by any process; null when none is stored (a full bucket). */
  readBucket(b: BucketKey): Promise<StoredBucket | null>;
  /**
   * In one write transaction: each bucket in `buckets` is read and replaced by what `merge`
   * makes of it (null, read or returned: a full bucket, stored as no row), and rows full before
   * `now` are deleted. Resolves once that transaction committed. `merge` is synchronous and is
   * called inside the transaction, once per bucket, with the row as locked there (PostgreSQL:
   * SELECT … FOR UPDATE), so another process's merge of the same bucket waits for this one; it
   * must not await anything. When the transaction fails, what `merge` returned is not stored.
   */
  mergeBuckets(
    buckets: readonly BucketKey[],
    merge: (b: BucketKey, stored: StoredBucket | null) => StoredBucket | null,
    now: Date,
  ): Promise<void>;
  /** The stored buckets merged at or after `since` (all of them for the epoch): which ones a read would find. */
  bucketsMergedSince(since: Date): Promise<(BucketKey & { fullAt: Date })[]>;
}

/**
 * One CRL writer per scope among the replicas sharing a database (Boulder's crl-updater leases
 * its shards the same way). A replica takes the scope's lease before it builds the CRL and stores
 * it with saveCrlAsHolder, which re-checks the lease in the transaction that switches the scope to
 * the new CRL: the lease keeps two replicas from building the same CRL, and the fenced save keeps
 * a replica that lost its lease (paused, partitioned, slow) from overwriting its successor's CRL.
 * The CRL number (RFC 5280 §5.2.3) is the fencing token: a save below or at the stored number is
 * refused whoever holds the lease. Lease times are the caller's `now` (see the implementations for
 * the clock assumption); they say nothing of the CRL's thisUpdate/nextUpdate.
 */
export interface CrlLeases {
  /**
   * Takes (or extends) the scope's lease for `holder` until `until`, if it is free, expired at
   * `now`, or already `holder`'s; false when another holder's lease runs past `now`.
   */
  acquire(scope: CrlScope, holder: string, until: Date, now: Date): Promise<boolean>;
  /** Gives the lease up if `holder` has it (another replica may take it at once); else nothing. */
  release(scope: CrlScope, holder: string): Promise<void>;
  /**
   * saveCrl, fenced: stores `s` as its scope's current CRL only if `holder` holds an unexpired
   * lease on the scope at `now` and `s.crlNumber` is above the stored one, both checked in the
   * transaction that stores it. False (nothing stored) otherwise.
   */
  saveCrlAsHolder(s: StoredCrl, holder: string, now: Date): Promise<boolean>;
}
