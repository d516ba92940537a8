import type { Clock } from "../core/clock.js";
import type { Signer } from "../signing/signer.js";
import type { IssuerLifecycleStore, IssuerRecord, IssuerStore } from "../storage/ports.js";
import { bindIssuer, currentIntermediate, type Issuer } from "./issuer.js";

/** Which issuers a process works with at one moment. */
export interface IssuerLineup {
  /** The intermediate that signs every new leaf (issuer.ts currentIntermediate). */
  current: Issuer;
  /**
   * Every intermediate that still answers for what it issued (its CRLs, RFC 5280 §5; its OCSP
   * answers, RFC 6960 §2.2): the current one first, then older ones, including revoked ones, until
   * their last certificate has expired (then nothing of theirs needs a status any more).
   */
  answering: readonly Issuer[];
  /** Every issuer row as read (roots included). */
  records: readonly IssuerRecord[];
}

export type IssuerCatalog = Pick<IssuerStore, "listIssuers">;

/**
 * The intermediates a daemon process (primary or worker) holds keys for, re-read from the
 * database on each `refresh()` (the daemon calls it every second), so `fleetca rotate
 * intermediate` and `fleetca revoke-issuer`, which write the issuers table from another process,
 * take effect within seconds and without a restart. Only the keys of the current intermediate
 * and of those with unexpired certificates are unwrapped; a key is unwrapped once and dropped
 * when its intermediate stops answering.
 *
 * Refreshes run one at a time: a refresh reads the table and then updates the lineup, the keys and
 * the fingerprint across awaits (the store is asynchronous), so two interleaved ones could leave
 * an older read's lineup in place of a newer one. A call made while one runs waits for it, then
 * reads the table itself (a read from before the call might predate the change it looks for).
 */
export class LiveIssuers {
  readonly #bound = new Map<string, Issuer>();
  /** Per intermediate, its last certificate's expiry as last read; re-read once it has passed. */
  readonly #lastExpiry = new Map<string, Date | null>();
  #lineup: IssuerLineup | null = null;
  #fingerprint = "";
  /** The refresh running or last run; the next one starts after it (settled either way). */
  #running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly catalog: IssuerCatalog,
    private readonly lifecycle: Pick<IssuerLifecycleStore, "lastCertificateExpiry">,
    private readonly keys: { load(keyName: string): Promise<Signer> },
    private readonly clock: Clock,
    private readonly wrapSigner: (s: Signer, keyIdHex: string) => Signer = (s) => s,
  ) {}

  /** The lineup as of the last refresh; call `refresh()` once first. */
  get lineup(): IssuerLineup {
    if (!this.#lineup) throw new Error("LiveIssuers.refresh() was never called");
    return this.#lineup;
  }

  /**
   * Reads the issuers table; resolves to the new lineup when it differs from the last one (a new
   * current intermediate, one revoked, one that stopped answering), else null. Throws
   * OperatorError when no intermediate can issue (the first call at start-up reports it).
   */
  refresh(): Promise<IssuerLineup | null> {
    const next = this.#running.then(() => this.#refresh());
    this.#running = next.catch(() => {});
    return next;
  }

  async #refresh(): Promise<IssuerLineup | null> {
    const records = await this.catalog.listIssuers();
    const now = this.clock.now();
    const current = currentIntermediate(records, now);
    const answeringRecords = [current];
    for (const r of records) {
      if (r.role === "intermediate" && r.keyId !== current.keyId && (await this.#hasUnexpiredCertificates(r.keyId, now))) answeringRecords.push(r);
    }
    const fingerprint = [
      ...answeringRecords.map((r) => r.keyId),
      "|",
      ...records.map((r) => `${r.keyId}:${r.status}:${r.activatedAt?.getTime() ?? "-"}:${r.revokedAt?.getTime() ?? "-"}`),
    ].join(",");
    if (this.#lineup && fingerprint === this.#fingerprint) return null;
    const answering: Issuer[] = [];
    for (const r of answeringRecords) answering.push(this.#bound.get(r.keyId) ?? (await this.#bind(r)));
    for (const k of [...this.#bound.keys()]) if (!answering.some((i) => i.keyIdHex === k)) this.#bound.delete(k);
    this.#fingerprint = fingerprint;
    this.#lineup = { current: answering[0]!, answering, records };
    return this.#lineup;
  }

  async #bind(r: IssuerRecord): Promise<Issuer> {
    const issuer = await bindIssuer(r.der, this.wrapSigner(await this.keys.load(r.keyName), r.keyId));
    this.#bound.set(r.keyId, issuer);
    return issuer;
  }

  async #hasUnexpiredCertificates(keyId: string, now: Date): Promise<boolean> {
    let last = this.#lastExpiry.get(keyId);
    // Re-read once the known last expiry has passed: a leaf committed just after the rotation
    // (a request that was being signed by the old intermediate) may expire later.
    if (last === undefined || last === null || last <= now) {
      last = await this.lifecycle.lastCertificateExpiry(keyId);
      this.#lastExpiry.set(keyId, last);
    }
    return last !== null && last > now;
  }
}
