import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { AuditFields, IntentFields } from "../../audit/audit-entry.js";
import { CaError } from "../../core/errors.js";
import type { CommitOutcome, IssuanceCommit } from "../ports.js";
import { receiveError, type WriterMessage, type WriterRequest, type WriterSettings } from "./commit-writer-protocol.js";
import type { GroupCommitSettings } from "./issuance-group-commit.js";

type Request = WriterRequest extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

/**
 * The issuance writes (certificates, token uses, idempotency keys, issuance-log entries) made by
 * a writer thread with its own SQLite connection, instead of on the event loop that parses
 * requests, verifies tokens and signs (issue 14). Under sign load the group commit's SQLite work
 * (statements, the WAL write, fsync, checkpoints) was ~27 % of the main thread's time once every
 * certificate also wrote two log entries; on a second core it runs beside the signing instead of
 * between signatures. The writes, the batching and their outcomes are the inline path's exactly:
 * the thread runs the same SqliteStore with the same IssuanceGroupCommit
 * (commit-writer-thread.ts), and what a request waits for is the same COMMIT.
 *
 * Both connections write one WAL database; SQLite's locks serialise them (busy_timeout), so the
 * main connection's own writes (revocations, CRL and OCSP state) still work, as another process's
 * would. Reads on the main connection see a commit as soon as its promise resolves (WAL: a new
 * read transaction sees every committed frame).
 *
 * If the thread dies (it should not: a crash of the addon, out of memory), the requests it held
 * are refused with "unavailable" (503; what they wrote was rolled back with the connection), the
 * failure is reported, and the next request starts a fresh thread.
 */
export class CommitWriter {
  #worker: Worker | null = null;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: CommitOutcome | null) => void; reject: (e: unknown) => void }>();
  #closed = false;
  #outbox: WriterRequest[] = [];
  #sending: NodeJS.Immediate | null = null;

  constructor(
    private readonly script: URL,
    private readonly settings: WriterSettings,
    private readonly hooks: { onBatch?: GroupCommitSettings["onBatch"]; onExit?: (err: Error) => void } = {},
  ) {
    this.#start();
  }

  commitIssuance(commit: IssuanceCommit): Promise<CommitOutcome> {
    return this.#send({ op: "issuance", commit }) as Promise<CommitOutcome>;
  }

  recordIntent(intent: IntentFields, at: Date): Promise<CommitOutcome> {
    return this.#send({ op: "intent", intent, at }) as Promise<CommitOutcome>;
  }

  async recordAudit(fields: AuditFields, at: Date): Promise<void> {
    await this.#send({ op: "audit", fields, at });
  }

  /** Resolves once everything sent before it was committed or refused. */
  async flush(): Promise<void> {
    if (this.#worker === null) return;
    await this.#send({ op: "flush" });
  }

  /**
   * Stops the thread. Call `flush()` first: a commit still in flight is refused (its transaction
   * rolls back with the connection), never half-written.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const w = this.#worker;
    this.#worker = null;
    if (w) await w.terminate();
    this.#failAll(new Error("the store was closed"));
  }

  #start(): Worker {
    // A batch is at most maxBatch small rows: a few MB of heap is plenty, and a small young
    // generation keeps the thread's share of an idle daemon's RSS down (issue 12's < 120 MB).
    const w = new Worker(this.script, { workerData: this.settings, resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 } });
    this.#worker = w;
    w.on("message", (m: WriterMessage) => this.#onMessage(m));
    w.on("error", (e) => this.#lost(w, e));
    w.on("exit", (code) => this.#lost(w, new Error(`the writer thread exited (code ${code})`)));
    w.unref();
    return w;
  }

  #send(req: Request): Promise<CommitOutcome | null> {
    if (this.#closed) return Promise.reject(new CaError("unavailable", "the certificate store is closed; retry later"));
    const w = this.#worker ?? this.#start();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // Referenced while it owes an answer, so a caller awaiting a commit keeps the process alive.
      if (this.#pending.size === 1) w.ref();
      // One message per loop turn, not per request: the thread sees the turn's requests together
      // (one batch, as the inline group commit would make) and each postMessage costs the sender.
      this.#outbox.push({ ...req, id } as WriterRequest);
      this.#sending ??= setImmediate(() => {
        this.#sending = null;
        const out = this.#outbox;
        this.#outbox = [];
        this.#worker?.postMessage(out);
      });
    });
  }

  #onMessage(m: WriterMessage): void {
    switch (m.kind) {
      case "replies":
        for (const r of m.replies) {
          const p = this.#pending.get(r.id);
          if (!p) continue;
          this.#pending.delete(r.id);
          if (r.ok) p.resolve(r.outcome);
          else p.reject(receiveError(r.error));
        }
        if (this.#pending.size === 0) this.#worker?.unref();
        break;
      case "batch":
        this.hooks.onBatch?.({ size: m.size, ms: m.ms, committed: m.committed, ...(m.cause && { cause: receiveError(m.cause) }) });
        break;
      case "ready":
        break;
    }
  }

  #lost(w: Worker, err: Error): void {
    if (this.#worker !== w) return;
    this.#worker = null;
    if (this.#closed) return;
    this.hooks.onExit?.(err);
    this.#failAll(err);
  }

  #failAll(cause: Error): void {
    const err = new CaError("unavailable", "the certificate store cannot commit right now; retry later", { cause });
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    // Not sent yet: refused with the rest, so none of them is committed after its caller heard 503.
    this.#outbox = [];
  }
}

/**
 * The compiled writer thread next to this module, or null when this module runs from the
 * TypeScript sources (vitest's in-process tests): a worker thread loads only JavaScript, so those
 * use the inline group commit, the same code the thread runs.
 */
export function builtWriterThreadScript(): URL | null {
  const url = new URL("./commit-writer-thread.js", import.meta.url);
  return existsSync(fileURLToPath(url)) ? url : null;
}
