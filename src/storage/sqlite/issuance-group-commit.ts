import type Database from "better-sqlite3";
import { CaError } from "../../core/errors.js";
import type { CommitOutcome, IssuanceCommit } from "../ports.js";

/**
 * Group commit for issuance (issue 12): concurrent `commitIssuance` calls queue up and share one
 * IMMEDIATE transaction, so a burst of N certificates costs one WAL fsync (synchronous=FULL)
 * instead of N, the way PostgreSQL's commit_delay / MySQL's binlog group commit amortise the
 * flush. Each commit runs inside its own SAVEPOINT (https://sqlite.org/lang_savepoint.html), so
 * its outcome is exactly what it would be alone: a replayed token, a serial collision or an
 * idempotency conflict rolls back to that savepoint and the rest of the batch still commits; a
 * later commit in the same batch sees the earlier ones' rows (two requests spending one token:
 * the second is "replayed").
 *
 * No promise settles before the batch's COMMIT has returned (store before hand-out, DESIGN habit
 * 2). When the batch cannot commit (BEGIN or COMMIT fails: SQLITE_BUSY past busy_timeout, I/O
 * error, full disk), nothing of it is stored and every request in it rejects with CaError
 * "unavailable" (HTTP 503 + Retry-After): their tokens stay unused and a retry succeeds.
 *
 * better-sqlite3 is synchronous: a flush runs to completion on the event loop, fsync included.
 * That stall is bounded by `maxBatch` (docs/benchmarks.md, "Group commit (issue 12)", has the
 * figures), and while it lasts, new requests pile up in the poll queue and form the next batch:
 * the batch size follows the load by itself, with no timer to tune.
 */
export interface GroupCommitSettings {
  /** A batch is flushed at once when this many commits are queued. */
  maxBatch: number;
  /**
   * Told after every batch: how many commits it held, how long the event loop was held (BEGIN to
   * COMMIT, fsync included) and whether it committed. For measurement and tests.
   */
  onBatch?: (b: BatchReport) => void;
}

export interface BatchReport {
  size: number;
  ms: number;
  committed: boolean;
  /** Why the batch could not commit (a SqliteError: SQLITE_BUSY, SQLITE_FULL, …). */
  cause?: unknown;
}

/**
 * One issuance's statements, run inside the batch's transaction and the commit's own savepoint.
 * Any outcome other than "committed" is rolled back to the savepoint by the group committer.
 */
export type ApplyIssuance = (c: IssuanceCommit) => CommitOutcome;

interface Pending {
  /** The commit's statements (an issuance, or an issuance-log entry: see `commitWork`). */
  apply: () => CommitOutcome;
  /** Must be on disk (fsynced) before it resolves; false: written to the WAL, fsynced by a later commit. */
  durable: boolean;
  resolve: (o: CommitOutcome) => void;
  reject: (e: unknown) => void;
}

export const DEFAULT_GROUP_COMMIT: GroupCommitSettings = { maxBatch: 64 };

export class IssuanceGroupCommit {
  #queue: Pending[] = [];
  #scheduled: NodeJS.Immediate | null = null;
  readonly #stmts;

  constructor(
    private readonly db: Database.Database,
    private readonly apply: ApplyIssuance,
    private readonly settings: GroupCommitSettings = DEFAULT_GROUP_COMMIT,
  ) {
    if (!Number.isInteger(settings.maxBatch) || settings.maxBatch < 1) throw new Error(`group commit maxBatch must be a positive integer, got ${settings.maxBatch}`);
    this.#stmts = {
      begin: db.prepare("BEGIN IMMEDIATE"),
      commit: db.prepare("COMMIT"),
      rollback: db.prepare("ROLLBACK"),
      savepoint: db.prepare("SAVEPOINT issuance"),
      rollbackTo: db.prepare("ROLLBACK TO issuance"),
      release: db.prepare("RELEASE issuance"),
    };
  }

  /** Commits waiting for the next flush. */
  get pending(): number {
    return this.#queue.length;
  }

  commit(c: IssuanceCommit): Promise<CommitOutcome> {
    return this.commitWork(() => this.apply(c), { durable: true });
  }

  /**
   * Any other statements that must be durable before the caller goes on, sharing the same batch
   * and fsync: the issuance log's intent entry, written before a certificate is signed, rides in
   * the batch of other requests' certificates.
   *
   * `durable: false` commits without waiting for the disk: a batch holding only such commits runs
   * with synchronous=NORMAL, so its COMMIT writes the WAL (safe from a process crash: the OS has
   * the pages) but does not fsync. That is enough for an intent: what it protects against is a
   * signature that escapes unaccounted, and a signature can only escape in a certificate handed
   * out, which waits for its own durable commit; that fsync flushes the whole WAL, the intent's
   * frames before it included (https://sqlite.org/wal.html: frames are appended in order). On
   * power loss before then, the signature dies in RAM with the intent. Everything else
   * (certificates, tokens, idempotency keys) stays durable before it resolves.
   */
  commitWork(apply: () => CommitOutcome, opts: { durable: boolean }): Promise<CommitOutcome> {
    return new Promise<CommitOutcome>((resolve, reject) => {
      this.#queue.push({ apply, durable: opts.durable, resolve, reject });
      if (this.#queue.length >= this.settings.maxBatch) {
        this.flush();
      } else if (this.#scheduled === null) {
        // setImmediate runs after the I/O callbacks of this loop turn: every request whose
        // signature finished in the same turn joins this batch, and one alone waits no timer.
        this.#scheduled = setImmediate(() => {
          this.#scheduled = null;
          this.flush();
        });
      }
    });
  }

  /** Commits everything queued now, synchronously (also at close, so nothing queued is dropped). */
  flush(): void {
    if (this.#scheduled !== null) {
      clearImmediate(this.#scheduled);
      this.#scheduled = null;
    }
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.settings.maxBatch);
      const t0 = performance.now();
      const r = batch.some((p) => p.durable) ? this.#flushBatch(batch) : this.#withoutFsync(() => this.#flushBatch(batch));
      this.settings.onBatch?.({ size: batch.length, ms: performance.now() - t0, ...r });
    }
  }

  /** committed false: the batch as a whole could not commit (every request in it was refused). */
  #flushBatch(batch: Pending[]): { committed: boolean; cause?: unknown } {
    const s = this.#stmts;
    const outcomes: Array<{ ok: true; outcome: CommitOutcome } | { ok: false; error: unknown }> = [];
    try {
      s.begin.run();
    } catch (e) {
      return failAll(batch, e);
    }
    for (const p of batch) {
      try {
        s.savepoint.run();
      } catch (e) {
        this.#rollbackQuietly();
        return failAll(batch, e);
      }
      try {
        const outcome = p.apply();
        if (outcome === "committed") s.release.run();
        else {
          s.rollbackTo.run();
          s.release.run();
        }
        outcomes.push({ ok: true, outcome });
      } catch (e) {
        // SQLITE_FULL, IOERR, NOMEM and BUSY may roll the whole transaction back on their own
        // (https://sqlite.org/lang_transaction.html, "Response To Errors Within A Transaction"):
        // then the commits before this one are gone too, and the batch fails as a whole.
        if (!this.db.inTransaction) return failAll(batch, e);
        try {
          s.rollbackTo.run();
          s.release.run();
        } catch (e2) {
          this.#rollbackQuietly();
          return failAll(batch, e2);
        }
        outcomes.push({ ok: false, error: asStoreError(e) });
      }
    }
    try {
      s.commit.run();
    } catch (e) {
      // A failed COMMIT may leave the transaction open (SQLITE_BUSY, a deferred constraint):
      // end it, so nothing of the batch is stored and the connection is usable again.
      this.#rollbackQuietly();
      return failAll(batch, e);
    }
    batch.forEach((p, i) => {
      const r = outcomes[i]!;
      if (r.ok) p.resolve(r.outcome);
      else p.reject(r.error);
    });
    return { committed: true };
  }

  /** synchronous=NORMAL for one batch of non-durable commits (WAL mode: no fsync at COMMIT). */
  #withoutFsync<T>(run: () => T): T {
    const before = this.db.pragma("synchronous", { simple: true }) as number;
    this.db.pragma("synchronous = NORMAL");
    try {
      return run();
    } finally {
      this.db.pragma(`synchronous = ${before}`);
    }
  }

  #rollbackQuietly(): void {
    if (!this.db.inTransaction) return;
    try {
      this.#stmts.rollback.run();
    } catch {
      // The connection could not even roll back (I/O error): SQLite rolls back the hot journal /
      // ignores the uncommitted WAL frames on the next open, so nothing of the batch survives.
    }
  }
}

function failAll(batch: Pending[], cause: unknown): { committed: false; cause: unknown } {
  const err = new CaError("unavailable", "the certificate store cannot commit right now; retry later", { cause });
  for (const p of batch) p.reject(err);
  return { committed: false, cause };
}

/**
 * SQLite result codes that say the storage, not the request, is at fault
 * (https://sqlite.org/rescode.html): worth a retry later (503), never a 500. Anything else from
 * one commit's statements (a constraint the code should have ruled out) is a bug and stays one.
 */
const STORAGE_FAULTS = new Set(["SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_NOMEM", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL", "SQLITE_CORRUPT", "SQLITE_NOTADB"]);

function asStoreError(e: unknown): unknown {
  const code = (e as { code?: unknown }).code;
  // Extended codes (SQLITE_IOERR_FSYNC, SQLITE_BUSY_SNAPSHOT) carry their primary code as a prefix.
  if (typeof code === "string" && [...STORAGE_FAULTS].some((f) => code === f || code.startsWith(`${f}_`))) {
    return new CaError("unavailable", "the certificate store cannot commit right now; retry later", { cause: e });
  }
  return e;
}
