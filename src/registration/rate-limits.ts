import { isIPv6 } from "node:net";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import type { BucketKey, CertificateRecord, RateLimitStore } from "../storage/ports.js";
import { SharedTokenBuckets, type BucketRule } from "./token-buckets.js";

/** The limits, as named in metrics (`fleetca_rate_limited_total{limit}`), errors and the database. */
export const RATE_LIMITS = ["issuance_per_provisioner", "issuance_per_subject", "renewals_per_lineage", "failed_tokens_per_address"] as const;
export type RateLimitName = (typeof RATE_LIMITS)[number];

/** Each limit's bucket; null switches it off (config `rateLimits.<name>: false`). */
export type RateLimitRules = Record<RateLimitName, BucketRule | null>;

/** Tokens taken for a request that may still fail: given back unless it was served. */
export interface Reservation {
  giveBack(): void;
}

const NOTHING_TAKEN: Reservation = { giveBack: () => {} };

/**
 * Stored buckets are merged this often: what a restart can lose (after a crash; a clean stop
 * merges), and how stale one process's view of the others' takes may be. Once a second is one
 * small write transaction a second per process, next to hundreds of issuances.
 */
const MERGE_EVERY_MS = 1_000;

/**
 * The RA's rate limits (SPEC `429 rate_limited` with Retry-After), token buckets shared through
 * the database (token-buckets.ts: the cost per request, and the accuracy across processes):
 *
 * - issuance per provisioner and per subject (the verified token's `sub`, within its
 *   provisioner: two platforms' subjects are different namespaces), taken together or not at all;
 * - renewals per certificate lineage;
 * - failed token verifications per client address: over it, the address is refused before its
 *   token is verified (a flood of forged tokens costs a Map lookup each, not a signature check).
 *
 * A request refused here stores nothing and spends no token. Tokens taken for a request that is
 * then refused for another reason (a bad CSR, a replay, a store that cannot commit) are given
 * back: the limits count what was issued, not what was attempted.
 */
export class RateLimits {
  readonly #buckets: SharedTokenBuckets;
  #timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly rules: RateLimitRules,
    store: RateLimitStore,
    clock: Clock,
    private readonly log: Logger,
    /** Told of every refusal (metrics: fleetca_rate_limited_total). */
    private readonly onLimited?: (limit: RateLimitName) => void,
  ) {
    for (const [name, rule] of Object.entries(rules)) {
      if (rule && !(rule.perSecond > 0 && rule.burst >= 1)) throw new Error(`rate limit ${name}: perSecond must be positive and burst at least 1`);
    }
    this.#buckets = new SharedTokenBuckets(store, clock);
  }

  /** Starts merging into the database in the background (a merge still running is not overlapped). */
  start(): this {
    this.#timer ??= setInterval(() => void this.merge(), MERGE_EVERY_MS);
    this.#timer.unref();
    return this;
  }

  /** Stops the background merges and merges what is left, after the merge running (await it before the store closes). */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#buckets.flush().catch((err: unknown) => this.log.warn({ err }, "could not store the rate-limit buckets at close"));
  }

  /** Never rejects: a failure is logged. */
  async merge(): Promise<void> {
    try {
      await this.#buckets.merge();
    } catch (err) {
      // A busy or failing store: the takes stay here and are merged at the next attempt.
      this.log.warn({ err }, "could not store the rate-limit buckets; retrying");
    }
  }

  /** POST /v1/sign, before the token is verified: 429 for an address over its failed verifications. */
  async refuseFailingClient(address: string | undefined): Promise<void> {
    const rule = this.rules.failed_tokens_per_address;
    if (!rule || address === undefined) return;
    const wait = await this.#buckets.waitFor(bucket("failed_tokens_per_address", clientKey(address)), rule).catch(unavailable);
    if (wait !== null) this.#refuse("failed_tokens_per_address", wait);
  }

  /**
   * A token from `address` failed verification (or was replayed). Not awaited by the refusal it
   * comes with: counted within the call when this process holds the address's bucket, else once
   * the bucket is read; a store that cannot read it is logged, and the failure goes uncounted.
   */
  tokenRefused(address: string | undefined): void {
    const rule = this.rules.failed_tokens_per_address;
    if (!rule || address === undefined) return;
    this.#buckets
      .charge(bucket("failed_tokens_per_address", clientKey(address)), rule)
      .catch((err: unknown) => this.log.warn({ err }, "could not count a failed token against its address"));
  }

  /** One issuance through `provisioner` for `subject`, or 429. */
  takeIssuance(provisioner: string, subject: string): Promise<Reservation> {
    const buckets: (readonly [BucketKey, BucketRule])[] = [];
    const { issuance_per_provisioner: perProvisioner, issuance_per_subject: perSubject } = this.rules;
    if (perProvisioner) buckets.push([bucket("issuance_per_provisioner", provisioner), perProvisioner]);
    // Provisioner names are [a-z0-9-]: the first ":" ends it.
    if (perSubject) buckets.push([bucket("issuance_per_subject", `${provisioner}:${subject}`), perSubject]);
    return this.#take(buckets);
  }

  /** One renewal of the certificate lineage `lineage` (renewalLineageOf), or 429. */
  takeRenewal(lineage: string): Promise<Reservation> {
    const rule = this.rules.renewals_per_lineage;
    return rule ? this.#take([[bucket("renewals_per_lineage", lineage), rule]]) : Promise.resolve(NOTHING_TAKEN);
  }

  async #take(buckets: readonly (readonly [BucketKey, BucketRule])[]): Promise<Reservation> {
    if (buckets.length === 0) return NOTHING_TAKEN;
    const refused = await this.#buckets.takeAll(buckets).catch(unavailable);
    if (refused) this.#refuse(refused.bucket.limit as RateLimitName, refused.retryAfterSeconds);
    let given = false;
    return {
      giveBack: () => {
        if (given) return;
        given = true;
        // Within the call while the buckets are held (the usual case: they were just taken from).
        this.#buckets.giveBack(buckets).catch((err: unknown) => this.log.warn({ err }, "could not give back rate-limit tokens"));
      },
    };
  }

  #refuse(limit: RateLimitName, seconds: number): never {
    this.onLimited?.(limit);
    const retryAfterSeconds = Math.max(1, Math.ceil(seconds));
    throw new CaError("rate_limited", `${limit}: retry after ${retryAfterSeconds}s`, { retryAfterSeconds });
  }
}

/**
 * A bucket the store could not read (only a bucket this process does not hold, with a stored
 * row, is read): the request cannot be limited, so it is not served (503, retry later).
 */
function unavailable(err: unknown): never {
  throw new CaError("unavailable", "rate limits: the database does not answer", { cause: err });
}

/**
 * The lineage a renewal counts against: the serial of the first certificate of its chain of
 * renewals (migration v13), so a certificate that renews itself in a loop, each successor
 * renewing again, is limited as one chain.
 */
export function renewalLineageOf(record: CertificateRecord): string {
  return record.lineage ?? record.serial;
}

/**
 * One client address, as the failed-verification limit counts it: an IPv4 address (also when
 * IPv4-mapped), or the /64 of an IPv6 address, since one host commonly holds a whole /64
 * (RFC 4291 §2.5.4, SLAAC privacy addresses) and could otherwise step to a fresh bucket at will.
 */
export function clientKey(address: string): string {
  // Every request passes here: an IPv4 peer (no ":") costs one scan, not node:net's checks.
  if (!address.includes(":")) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  return `${ipv6Groups(address).slice(0, 4).join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, as lower-case hex without leading zeros. */
function ipv6Groups(address: string): string[] {
  const [head, tail] = address.toLowerCase().split("%")[0]!.split("::") as [string, string | undefined];
  const parse = (s: string | undefined) => (s ? s.split(":") : []);
  const left = parse(head);
  const right = parse(tail);
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return groups.map((g) => (g.includes(".") ? g : Number.parseInt(g, 16).toString(16)));
}

function bucket(limit: RateLimitName, key: string): BucketKey {
  return { limit, key };
}
