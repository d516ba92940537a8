import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { Signer } from "../signing/signer.js";
import type { AuditLogStore, StoredTreeHead } from "../storage/ports.js";
import { MerkleFrontier } from "./merkle.js";
import { signTreeHead } from "./tree-head.js";

/** What the publisher reads and writes of the issuance log. */
export type TreeHeadStore = Pick<AuditLogStore, "size" | "leafHashes" | "latestTreeHead" | "addTreeHead">;

/** Leaf hashes read per query while catching up (32 bytes each: 2 MB a page). */
const PAGE = 65_536;

/**
 * Signs a tree head over the issuance log every `audit.treeHeadInterval` when it grew, at start
 * (covering whatever an unclean stop left unsigned) and at shutdown. Only the primary process
 * runs one; the entries may come from any process that issues (API workers, CLI commands).
 *
 * The tree's right edge (MerkleFrontier) stays in memory, so each head costs the new entries'
 * hashes plus log2(n) nodes, not a pass over the whole log.
 */
export class TreeHeadPublisher {
  readonly #frontier = new MerkleFrontier();
  #lastHeadSize = 0;
  #problem: string | null = null;
  #busy: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: TreeHeadStore,
    private readonly key: { name: string; signer: Signer },
    private readonly clock: Clock,
    private readonly log: Logger,
    /**
     * Told at every publish attempt: the log's size, and the size its latest signed head covers.
     * They differ after a head could not be signed (fleetca_audit_signed_tree_size lags behind).
     */
    private readonly onSize: (treeSize: number, signedTreeSize: number) => void = () => {},
    /**
     * Replicas sharing one database: only the one holding the lease signs heads (null: this
     * process is the only signer). The others keep the frontier current and sign nothing.
     */
    private readonly mayPublish: (() => boolean) | null = null,
  ) {}

  /** Why the log and its latest signed head disagree (set once, reported by /healthz), or null. */
  get problem(): string | null {
    return this.#problem;
  }

  get treeSize(): number {
    return this.#frontier.size;
  }

  /**
   * Catches up with the stored log and signs a head if entries are not yet covered by one.
   * Rejects when the stored log has a gap (the daemon does not start on it). In the publish queue,
   * so a publish() asked meanwhile waits for the catch-up rather than reading the log beside it.
   */
  async start(): Promise<void> {
    const caughtUp = this.#busy.then(async () => {
      const latest = await this.store.latestTreeHead();
      this.#lastHeadSize = latest?.treeSize ?? 0;
      this.onSize(this.#lastHeadSize, this.#lastHeadSize);
      await this.#catchUp(latest);
    });
    this.#busy = caughtUp.catch(() => {});
    await caughtUp;
    return this.publish();
  }

  /** Signs a head now if the log grew since the last one. Serialised: never two heads at once. */
  publish(): Promise<void> {
    this.#busy = this.#busy.then(() => this.#publish()).catch((e: unknown) => {
      this.log.error({ err: e }, "could not sign an issuance log tree head");
    });
    return this.#busy;
  }

  async #catchUp(check: Pick<StoredTreeHead, "treeSize" | "rootHash"> | null): Promise<void> {
    const size = await this.store.size();
    for (let from = this.#frontier.size; from < size; from += PAGE) {
      const to = Math.min(size, from + PAGE);
      const hashes = await this.store.leafHashes(from, to);
      if (hashes.length !== to - from) throw new Error(`issuance log has a gap between ${from} and ${to}`);
      for (const h of hashes) {
        this.#frontier.push(h);
        if (check && this.#frontier.size === check.treeSize && !this.#frontier.root().equals(check.rootHash)) {
          this.#problem = `the issuance log's first ${check.treeSize} entries no longer match their signed tree head: run "fleetca audit verify"`;
          this.log.error({ treeSize: check.treeSize }, "issuance log does not match its latest signed tree head");
        }
      }
    }
  }

  async #publish(): Promise<void> {
    await this.#catchUp(null);
    const treeSize = this.#frontier.size;
    if (this.mayPublish) {
      if (!this.mayPublish()) return;
      // A lease just taken over: the previous holder's heads count as signed.
      const latest = await this.store.latestTreeHead();
      if (latest) this.#lastHeadSize = Math.max(this.#lastHeadSize, latest.treeSize);
    }
    this.onSize(treeSize, this.#lastHeadSize);
    if (treeSize === 0 || treeSize <= this.#lastHeadSize) return;
    const head = { treeSize, rootHash: this.#frontier.root(), timestamp: this.clock.now().getTime() };
    const signature = await signTreeHead(this.key.signer, head);
    await this.store.addTreeHead({ ...head, keyName: this.key.name, keySpki: Buffer.from(this.key.signer.publicKeySpki), signature });
    this.#lastHeadSize = treeSize;
    this.onSize(treeSize, treeSize);
    this.log.info({ treeSize, rootHash: head.rootHash.toString("hex") }, "issuance log tree head signed");
  }
}
