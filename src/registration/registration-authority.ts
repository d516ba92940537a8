import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import { parseDuration } from "../core/duration.js";
import type { SubjectKeyAlgorithm } from "../core/key-type.js";
import { sanCount, sansEqual, sansToList, type Sans } from "../core/sans.js";
import type { SerialHex } from "../core/serial.js";
import type { Secret } from "../core/secret.js";
import type { ProvisionerRegistry } from "../attestation/routing.js";
import { SerialCollision, type IssuedLeaf, type LeafIssuer } from "../issuance/certificate-authority.js";
import type { AuditOperation, IssuedFields } from "../audit/audit-entry.js";
import type { Authorization } from "../attestation/provisioner.js";
import type { CertificateRecord, IdempotencyRecord, IdempotencyScope, IssuanceStore } from "../storage/ports.js";
import { decodeCsrPem, subjectKeyOf, verifyCsrOffThread } from "../x509/csr.js";
import { issuedMatchesRequest } from "../x509/lint.js";
import { toPem } from "../x509/pem.js";
import type { AuthenticatedClient } from "./client-authentication.js";
import { decideSans } from "./san-policy.js";
import type { ProvisionerLifecycles } from "./provisioner-lifecycle.js";
import { describeCertificate } from "../x509/certificate-info.js";
import type { NamePolicy } from "./name-policy.js";
import { renewalLineageOf, type RateLimits } from "./rate-limits.js";

export interface SignRequest {
  token: Secret;
  body: unknown;
  idempotencyKey?: string | undefined;
  /** The client's address, for the issuance log. */
  client?: string | undefined;
}

/** Who asked, on whose word: what the issuance log records with an intent and its outcome. */
interface IssuanceContext {
  op: AuditOperation;
  provisioner: string;
  jti: string | null;
  client: string | null;
  renewedFrom: SerialHex | null;
}

export interface IssuedCertificate {
  serial: string;
  certificate: string;
  chain: string;
  notBefore: string;
  notAfter: string;
}

export interface RaSettings {
  /** Each provisioner's lifetimes and renewal rules (provisioner-lifecycle.ts). */
  lifecycles: ProvisionerLifecycles;
  /** issuance.minTTL: a request asking for a shorter lifetime is refused (400 bad_request). */
  minTtlMs: number;
  /** Idempotency keys are honoured this long after the first request. */
  idempotencyWindowMs: number;
  /** Config `policy`: checked on the exact SANs of every sign and renew, before anything is recorded. */
  namePolicy?: NamePolicy | undefined;
  /**
   * Called with the renewed certificate's issuer before a renewal is issued: a process that does
   * not know that intermediate yet (another process rotated, this one polls the issuers table
   * every second) re-reads the table first. Otherwise, with several API processes, a host whose
   * certificate already came from the new intermediate could be renewed by the old one.
   */
  followIssuer?: ((issuerKeyId: string) => Promise<void>) | undefined;
}

/** One verified POST /v1/sign, as #signOnce works on it. */
interface TokenRequest {
  auth: Authorization;
  csrDer: Uint8Array;
  ttlMs: number;
  /** What makes two requests with one key the same request: the CSR's DER and the lifetime. */
  requestHash: string;
  now: Date;
  client: string | undefined;
  idempotency: { scope: IdempotencyScope; key: string } | undefined;
}

/** Visible ASCII, as IETF draft-ietf-httpapi-idempotency-key-header suggests for the header value. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
const MAX_SERIAL_ATTEMPTS = 3;

/**
 * The RA (Boulder ra/ra.go): decides who gets what. verify CSR → authorize token → check policy
 * → issue via the CA → re-check → commit durably → hand out. It never touches key bytes or HTTP.
 */
export class RegistrationAuthority {
  constructor(
    private readonly provisioners: ProvisionerRegistry,
    private readonly ca: () => LeafIssuer,
    private readonly store: IssuanceStore,
    private readonly clock: Clock,
    private readonly settings: RaSettings,
    private readonly audiences: () => readonly string[],
    private readonly log: Logger,
    /** Told of each certificate issued to a host (metrics: fleetca_certificates_issued_total). */
    private readonly onIssued?: (provisioner: string, kind: "sign" | "renew") => void,
    /** Issuance, renewal and failed-token limits (SPEC 429 rate_limited); none when absent. */
    private readonly rateLimits?: RateLimits,
  ) {}

  /**
   * Requests in flight in this process, by idempotency slot (the verified token's provisioner and
   * subject, and the key). A retry that arrives while the first attempt is still being signed or
   * committed (a client that timed out and resent, a cert-agent restarted after a crash) waits for
   * it and then reads its outcome from the store, instead of racing it to the token and losing
   * with "replayed" after a signature that is never stored. Keyed after the token is verified,
   * never by the raw header: another identity's request with the same key is not this one's
   * retry and must neither wait for it nor be answered by it.
   */
  readonly #inFlight = new Map<string, Promise<unknown>>();

  async sign(req: SignRequest): Promise<IssuedCertificate> {
    const { csrPem, ttlMs: requestedTtlMs, provisioner } = parseSignBody(req.body, this.settings);
    const key = req.idempotencyKey;
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
      throw new CaError("bad_request", "Idempotency-Key must be 1-255 visible ASCII characters");
    }
    const csrDer = decodeCsrPem(csrPem);
    // Before the token costs a signature check: an address sending bad tokens is refused here.
    await this.rateLimits?.refuseFailingClient(req.client);
    const now = this.clock.now();
    const auth = await this.provisioners.authorize(req.token, { now, audiences: this.audiences() }, provisioner).catch((e: unknown) => {
      this.#recordRefusal(e, provisioner ?? null, req.client);
      throw e;
    });
    const ttlMs = this.settings.lifecycles.ttlFor(auth.provisioner, requestedTtlMs);
    const requestHash = createHash("sha256").update(csrDer).update(`|ttl=${ttlMs}`).digest("hex");
    const scope: IdempotencyScope = { provisioner: auth.provisioner, subject: auth.subject };
    const request: TokenRequest = { auth, csrDer, ttlMs, requestHash, now, client: req.client, idempotency: key === undefined ? undefined : { scope, key } };
    if (key === undefined) return this.#signOnce(request);

    const slot = JSON.stringify([scope.provisioner, scope.subject, key]);
    for (;;) {
      const running = this.#inFlight.get(slot);
      if (!running) break;
      await running.catch(() => {}); // its outcome is read from the store below, whatever it was
    }
    const attempt = this.#signOnce(request);
    this.#inFlight.set(slot, attempt);
    try {
      return await attempt;
    } finally {
      if (this.#inFlight.get(slot) === attempt) this.#inFlight.delete(slot);
    }
  }

  async #signOnce(r: TokenRequest): Promise<IssuedCertificate> {
    const { auth, idempotency } = r;
    // The token first, then the key. A request's token use and its key are one commit, so once
    // the token reads as spent, a key stored with it reads as stored too. Read the other way
    // round, another API process (listen.apiWorkers) committing this same request between the
    // two reads made a retry look like a replay: no key yet, then a spent token. So the key is
    // read only after the token read has resolved, never in parallel with it (the ports are
    // asynchronous: an asynchronous driver would otherwise answer them in any order).
    const tokenSpent = await this.store.isTokenUsed(auth.tokenId);
    const prior = idempotency && (await this.store.findIdempotency(idempotency.scope, idempotency.key, r.now));
    if (prior) return this.#replayIdempotent(prior, auth.tokenId, r.requestHash);
    if (tokenSpent) {
      const e = CaError.unauthorized("replayed");
      this.#recordRefusal(e, auth.provisioner, r.client);
      throw e;
    }

    // Taken before the CSR's signature is checked, given back unless a certificate is committed.
    const reservation = await this.rateLimits?.takeIssuance(auth.provisioner, auth.subject);
    let committed = false;
    try {
      return await this.#issueForToken(r, () => (committed = true));
    } finally {
      if (!committed) reservation?.giveBack();
    }
  }

  async #issueForToken(r: TokenRequest, committed: () => void): Promise<IssuedCertificate> {
    const { auth, idempotency } = r;
    const csr = await verifyCsrOffThread(r.csrDer);
    const sans = decideSans(csr.requested, auth.policy);
    // After the provisioner's decision, on exactly the SANs the certificate will carry; a refusal
    // here stores nothing and leaves the token unspent (it is spent by commitIssuance below).
    this.settings.namePolicy?.check(sans);
    const ca = this.ca();

    const context: IssuanceContext = { op: "sign", provisioner: auth.provisioner, jti: auth.tokenId, client: r.client ?? null, renewedFrom: null };
    for (let attempt = 1; attempt <= MAX_SERIAL_ATTEMPTS; attempt++) {
      const issued = await this.#issueChecked(ca, { spki: csr.spki, subjectKey: csr.subjectKey, sans, ttlMs: r.ttlMs }, context);
      if (!issued) continue;
      const record: CertificateRecord = { ...recordOf(issued, sans, auth.provisioner, auth.tokenId, this.clock.now()), ...(auth.instance !== undefined && { instance: auth.instance }) };
      const outcome = await this.store.commitIssuance({
        certificate: record,
        audit: issuedEntry(record, context),
        // A new attestation of this instance (a rebuilt host): its older lineages are revoked as
        // superseded with this commit, so a stolen identity token cannot keep a second one alive.
        ...(auth.instance !== undefined && { retireInstance: true }),
        tokenUse: { tokenId: auth.tokenId, provisioner: auth.provisioner, expiresAt: auth.tokenExpiresAt },
        ...(idempotency && {
          idempotency: {
            ...idempotency.scope,
            key: idempotency.key,
            requestHash: r.requestHash,
            tokenId: auth.tokenId,
            serial: issued.serial,
            expiresAt: new Date(r.now.getTime() + this.settings.idempotencyWindowMs),
          },
        }),
      });
      switch (outcome) {
        case "committed":
          committed();
          this.log.info(
            { serial: issued.serial, provisioner: auth.provisioner, sub: auth.subject, sans: sansToList(sans), notAfter: record.notAfter },
            "certificate issued",
          );
          this.onIssued?.(auth.provisioner, "sign");
          return this.#response(record);
        case "replayed":
        case "idempotency_conflict": {
          // The token or the key was taken meanwhile. By a concurrent attempt of this same
          // request (same scope and key, in another API process: this one's are serialised
          // above), whose certificate is then ours too; by another request with the key, a
          // conflict; by anything else, a replay.
          const winner = idempotency && (await this.store.findIdempotency(idempotency.scope, idempotency.key, r.now));
          if (winner) return this.#replayIdempotent(winner, auth.tokenId, r.requestHash);
          if (outcome === "idempotency_conflict") throw new CaError("conflict", "Idempotency-Key is in use by another request; retry with a new key");
          throw CaError.unauthorized("replayed");
        }
        case "serial_collision":
          this.log.warn({ serial: issued.serial, attempt }, "serial collision; re-issuing with a fresh serial");
          continue;
      }
    }
    throw new Error("could not allocate a unique serial");
  }

  /**
   * Issues a certificate for fleetca's own use (the API listener's serving cert): no token, the
   * SANs come from configuration. Stored like every other cert so it can be listed and revoked.
   */
  async issueInternal(req: { spki: Uint8Array; subjectKey: SubjectKeyAlgorithm; sans: Sans; ttlMs: number; purpose: string; instance?: string | null }): Promise<CertificateRecord> {
    // Each serving certificate replaces the earlier ones of its purpose and instance (this run's
    // previous one, and those of runs before): marked superseded, `fleetca list` shows only the
    // current one, one per replica.
    const record = await this.#issueWithoutToken(req, { op: "internal", provisioner: req.purpose, jti: null, client: null, renewedFrom: null }, undefined, {
      instance: req.instance ?? null,
    });
    if (record === "superseded") throw new Error("an internal certificate supersedes nothing");
    this.log.info({ serial: record.serial, purpose: req.purpose, sans: sansToList(req.sans), notAfter: record.notAfter }, "internal certificate issued");
    return record;
  }

  /**
   * POST /v1/renew: the holder of a live certificate gets its successor: exactly the same SANs
   * and provisioner (from the stored record, not from anything the client sends), a new serial, a
   * fresh lifetime, and a link to the cert it renewed. Same key unless the body carries a CSR
   * (rekey), which may ask for no SANs or exactly the current ones. No token is spent: the TLS
   * handshake proved possession of the current key and ClientAuthenticator proved the certificate
   * is ours, unrevoked and unexpired, which is all the authority a token would have carried.
   */
  async renew(holder: AuthenticatedClient, body: unknown, client?: string): Promise<IssuedCertificate> {
    const current = holder.certificate;
    const { csrPem, ttlMs: requestedTtlMs } = parseRenewBody(body, this.settings);
    let key: { spki: Uint8Array; subjectKey: SubjectKeyAlgorithm };
    if (csrPem === undefined) {
      // Same key: the one in the certificate the client presented, which ClientAuthenticator has
      // already decoded and found byte-identical to the stored row (no second parse).
      const spki = holder.presented.spki;
      key = { spki, subjectKey: subjectKeyOf(spki).subjectKey };
    } else {
      const csr = await verifyCsrOffThread(decodeCsrPem(csrPem));
      if (sanCount(csr.requested) > 0 && !sansEqual(csr.requested, current.sans)) {
        throw new CaError("forbidden", `a renewal keeps the current SANs (${sansToList(current.sans).slice(0, 5).join(", ")}); the CSR asks for others`);
      }
      key = { spki: csr.spki, subjectKey: csr.subjectKey };
    }
    // A renewal is an issuance: a name the policy no longer allows (config changed) is not renewed.
    this.settings.namePolicy?.check(current.sans);
    // A retry of a renewal that was stored but whose answer was lost (a dropped connection, an
    // agent killed before it wrote the files) gets that same successor back, not a refusal and
    // not a second certificate: the same key proves it is the same request (the agent keeps the
    // new key it sent until the set is published: agent/enrollment-journal.ts).
    const retried = await this.#sameKeySuccessor(current, key.spki);
    if (retried) return retried;
    const rules = this.settings.lifecycles.authorizeRenew(current, this.clock.now());
    const ttlMs = Math.min(requestedTtlMs ?? rules.defaultTtlMs, rules.maxTtlMs);
    // Given back when the renewal is not committed after all.
    await this.settings.followIssuer?.(current.issuerKeyId);
    const reservation = await this.rateLimits?.takeRenewal(renewalLineageOf(current));
    const outcome = await this.#issueWithoutToken(
      { ...key, sans: current.sans, ttlMs },
      { op: "renew", provisioner: current.provisioner, jti: null, client: client ?? null, renewedFrom: current.serial },
      { supersedes: current.serial, lineage: current.lineage ?? current.serial, attestedAt: current.attestedAt ?? current.createdAt, instance: current.instance ?? null },
    ).catch((e: unknown) => {
      reservation?.giveBack();
      throw e;
    });
    if (outcome === "superseded") {
      reservation?.giveBack();
      // Another renewal of this certificate committed first (two attempts raced): the same key's
      // answer is that one; anyone else's is a refusal, so one certificate never forks.
      const raced = await this.#sameKeySuccessor((await this.store.getCertificate(current.serial)) ?? current, key.spki);
      if (raced) return raced;
      throw new CaError("forbidden", `superseded: certificate ${current.serial} was renewed meanwhile; renew its successor`);
    }
    const record = outcome;
    this.log.info(
      { serial: record.serial, renewedFrom: current.serial, rekeyed: csrPem !== undefined, provisioner: record.provisioner, sans: sansToList(record.sans), notAfter: record.notAfter },
      "certificate renewed",
    );
    this.onIssued?.(record.provisioner, "renew");
    return this.#response(record);
  }

  /** The live successor of a superseded `current` when it certifies `spki`; else null. */
  async #sameKeySuccessor(current: CertificateRecord, spki: Uint8Array): Promise<IssuedCertificate | null> {
    if (!current.supersededBy) return null;
    const successor = await this.store.getCertificate(current.supersededBy);
    if (!successor || successor.status !== "valid" || this.clock.now().getTime() > successor.notAfter.getTime()) return null;
    if (!Buffer.from(describeCertificate(successor.der).spki).equals(Buffer.from(spki))) return null;
    this.log.info({ serial: successor.serial, renewedFrom: current.serial }, "renewal retried: answering with the certificate already issued");
    return this.#response(successor);
  }

  /**
   * Issue → re-check → commit for certificates no token pays for (internal, renewal), retrying
   * with a fresh serial on the (astronomically unlikely) collision. Stored before it is returned.
   */
  async #issueWithoutToken(
    req: { spki: Uint8Array; subjectKey: SubjectKeyAlgorithm; sans: Sans; ttlMs: number },
    context: IssuanceContext,
    renewal?: { supersedes: SerialHex; lineage: SerialHex; attestedAt: Date; instance: string | null },
    internal?: { instance: string | null },
  ): Promise<CertificateRecord | "superseded"> {
    const ca = this.ca();
    for (let attempt = 1; attempt <= MAX_SERIAL_ATTEMPTS; attempt++) {
      const issued = await this.#issueChecked(ca, req, context);
      if (!issued) continue;
      const record: CertificateRecord = {
        ...recordOf(issued, req.sans, context.provisioner, null, this.clock.now(), context.renewedFrom),
        ...(renewal && { lineage: renewal.lineage, attestedAt: renewal.attestedAt, instance: renewal.instance }),
        ...(internal && { instance: internal.instance }),
      };
      const outcome = await this.store.commitIssuance({
        certificate: record,
        audit: issuedEntry(record, context),
        ...(renewal && { supersedes: renewal.supersedes }),
        ...(internal && { supersedesPurpose: true }),
      });
      if (outcome === "committed") return record;
      if (outcome === "superseded") return outcome;
      this.log.warn({ serial: issued.serial, attempt, outcome }, "serial collision; re-issuing with a fresh serial");
    }
    throw new Error("could not allocate a unique serial");
  }

  /** The chain for a leaf of `issuerKeyId` (its own intermediate, also across a rotation); default the current one. */
  chainPem(issuerKeyId?: string): string {
    const ca = this.ca();
    return toPem((issuerKeyId !== undefined && ca.intermediateOf?.(issuerKeyId)) || ca.issuer.der, "CERTIFICATE");
  }

  /**
   * Issue (recording the intent first) and re-check; null when the drawn serial was taken before
   * anything was signed (the caller draws again).
   */
  async #issueChecked(
    ca: LeafIssuer,
    req: { spki: Uint8Array; subjectKey: SubjectKeyAlgorithm; sans: Sans; ttlMs: number },
    context: IssuanceContext,
  ): Promise<IssuedLeaf | null> {
    const beforeSign = ({ serial, tbsDer }: { serial: SerialHex; tbsDer: Uint8Array }) =>
      this.store.recordIntent(
        {
          kind: "intent",
          op: context.op,
          serial,
          issuer: ca.issuer.keyIdHex,
          tbs_sha256: sha256Hex(tbsDer),
          provisioner: context.provisioner,
          jti: context.jti,
          sans: sansToList(req.sans),
          key_sha256: sha256Hex(req.spki),
          client: context.client,
          renewed_from: context.renewedFrom,
        },
        this.clock.now(),
      );
    let issued: IssuedLeaf;
    try {
      issued = await ca.issueLeaf({ subjectSpki: req.spki, subjectKey: req.subjectKey, sans: req.sans, ttlMs: req.ttlMs, beforeSign });
    } catch (e) {
      if (e instanceof SerialCollision) {
        this.log.warn({ serial: e.serial }, "serial collision before signing; drawing another");
        return null;
      }
      throw e;
    }
    const problems = issuedMatchesRequest(issued.info, { spki: req.spki, sans: req.sans });
    if (problems.length > 0) throw new Error(`issued certificate does not match the request: ${problems.join("; ")}`);
    return issued;
  }

  /**
   * A refused token goes into the issuance log with its reason class only (never the token). Not
   * awaited: the refusal is answered at once, and its entry rides in the next group commit.
   */
  #recordRefusal(e: unknown, provisioner: string | null, client: string | undefined): void {
    if (!(e instanceof CaError) || e.code !== "unauthorized") return;
    const reason = e.message.split(":")[0]!;
    // Counted against the address unless it says nothing against the client: the platform's keys
    // unreachable (our failure), or a replay, which is what every honest client sends after a
    // lost answer or a CA crash (a fleet behind one NAT retrying at once must not be shut out;
    // the replay itself is refused all the same).
    if (reason !== "jwks_unavailable" && reason !== "replayed") this.rateLimits?.tokenRefused(client);
    this.store
      .recordAudit({ kind: "token_refused", provisioner, reason, client: client ?? null }, this.clock.now())
      .catch((err: unknown) => this.log.error({ err }, "could not record a refused token in the issuance log"));
  }

  /**
   * A live key of this identity: the same request (same token, CSR and ttl) is answered with the
   * stored certificate; anything else reusing the key is a 409 conflict (SPEC), as the IETF
   * Idempotency-Key draft (draft-ietf-httpapi-idempotency-key-header §2.7) has it for a key
   * reused with another payload: never a second certificate, never the first one's to a stranger.
   */
  async #replayIdempotent(prior: IdempotencyRecord, tokenId: string, requestHash: string): Promise<IssuedCertificate> {
    if (prior.tokenId !== tokenId || prior.requestHash !== requestHash) {
      throw new CaError("conflict", "Idempotency-Key was already used for a different request (another CSR, ttl or token); use a new key");
    }
    const record = await this.store.getCertificate(prior.serial as CertificateRecord["serial"]);
    if (!record) throw new Error(`idempotency key points at missing certificate ${prior.serial}`);
    return this.#response(record);
  }

  #response(r: CertificateRecord): IssuedCertificate {
    return {
      serial: r.serial,
      certificate: toPem(r.der, "CERTIFICATE"),
      chain: this.chainPem(r.issuerKeyId),
      notBefore: r.notBefore.toISOString(),
      notAfter: r.notAfter.toISOString(),
    };
  }
}

/**
 * A request's lifetime, when it names one; below issuance.minTTL it is refused (a certificate
 * stale before a host can use it is a mistake). The provisioner's default applies when it names
 * none, and its maximum clamps it (provisioner-lifecycle.ts).
 */
function requestedTtl(ttl: string | undefined, s: Pick<RaSettings, "minTtlMs">): number | undefined {
  if (ttl === undefined) return undefined;
  const ms = parseDuration(ttl);
  if (ms < s.minTtlMs) throw new CaError("bad_request", `ttl must be at least issuance.minTTL (${s.minTtlMs / 1000}s)`);
  return ms;
}

function parseSignBody(body: unknown, settings: RaSettings): { csrPem: string; ttlMs: number | undefined; provisioner?: string } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new CaError("bad_request", "expected a JSON object body");
  }
  const { csr, ttl, provisioner } = body as { csr?: unknown; ttl?: unknown; provisioner?: unknown };
  if (provisioner !== undefined && typeof provisioner !== "string") throw new CaError("bad_request", "provisioner must be a string");
  if (typeof csr !== "string" || csr.length === 0) throw new CaError("bad_request", "csr (a PEM string) is required");
  if (ttl !== undefined && typeof ttl !== "string") throw new CaError("bad_request", 'ttl must be a duration string like "24h"');
  return { csrPem: csr, ttlMs: requestedTtl(ttl, settings), ...(provisioner !== undefined && { provisioner }) };
}

/** POST /v1/renew body: none, `{}`, or `{"csr"?: PEM, "ttl"?: "24h"}`. */
function parseRenewBody(body: unknown, settings: RaSettings): { csrPem?: string; ttlMs: number | undefined } {
  if (body === undefined) return { ttlMs: undefined };
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new CaError("bad_request", "expected no body or a JSON object body");
  }
  const { csr, ttl } = body as { csr?: unknown; ttl?: unknown };
  if (csr !== undefined && (typeof csr !== "string" || csr.length === 0)) throw new CaError("bad_request", "csr, when given, must be a PEM string");
  if (ttl !== undefined && typeof ttl !== "string") throw new CaError("bad_request", 'ttl must be a duration string like "24h"');
  return { ...(csr !== undefined && { csrPem: csr }), ttlMs: requestedTtl(ttl, settings) };
}

function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

function issuedEntry(r: CertificateRecord, c: IssuanceContext): IssuedFields {
  return {
    kind: "issued",
    op: c.op,
    serial: r.serial,
    issuer: r.issuerKeyId,
    cert_sha256: sha256Hex(r.der),
    provisioner: r.provisioner,
    jti: c.jti,
    sans: sansToList(r.sans),
    not_after: r.notAfter.toISOString(),
  };
}

function recordOf(
  issued: IssuedLeaf,
  sans: Sans,
  provisioner: string,
  tokenId: string | null,
  now: Date,
  renewedFrom: SerialHex | null = null,
): CertificateRecord {
  return {
    serial: issued.serial,
    issuerKeyId: issued.issuerKeyIdHex,
    sans,
    subjectCommonName: issued.info.subjectCommonName,
    notBefore: issued.info.notBefore,
    notAfter: issued.info.notAfter,
    der: issued.der,
    provisioner,
    tokenId,
    status: "valid",
    revokedAt: null,
    revocationReason: null,
    createdAt: now,
    renewedFrom,
    crlShard: issued.crlShard,
  };
}

