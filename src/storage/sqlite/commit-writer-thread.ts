/**
 * The writer thread's entry point (commit-writer.ts starts it): its own SQLite connection, the
 * same SqliteStore writes and the same group commit as the inline path, run off the event loop
 * that parses requests and signs. Requests that arrive in one loop turn of this thread form one
 * batch (IssuanceGroupCommit schedules its flush with setImmediate, after the port's messages).
 */
import { parentPort, workerData } from "node:worker_threads";
import { sendError, type WriterMessage, type WriterReply, type WriterRequest, type WriterRequests, type WriterSettings } from "./commit-writer-protocol.js";
import { SqliteStore } from "./sqlite-store.js";

const port = parentPort;
if (!port) throw new Error("commit-writer-thread.js runs only as a worker thread");
const settings = workerData as WriterSettings;

const post = (m: WriterMessage) => port.postMessage(m);

const store = new SqliteStore(settings.path, {
  groupCommit: {
    maxBatch: settings.maxBatch,
    onBatch: (b) => post({ kind: "batch", size: b.size, ms: b.ms, committed: b.committed, ...(b.cause !== undefined && { cause: sendError(b.cause) }) }),
  },
});

let replies: WriterReply[] = [];
let scheduled = false;
const reply = (r: WriterReply) => {
  replies.push(r);
  if (scheduled) return;
  scheduled = true;
  // After the promise callbacks of this batch: every reply of the batch goes in one message.
  setImmediate(() => {
    scheduled = false;
    const out = replies;
    replies = [];
    post({ kind: "replies", replies: out });
  });
};

port.on("message", (ms: WriterRequests) => {
  for (const m of ms) handle(m);
});

function handle(m: WriterRequest): void {
  let work: Promise<unknown>;
  switch (m.op) {
    case "issuance":
      work = store.commitIssuance(m.commit);
      break;
    case "intent":
      work = store.recordIntent(m.intent, m.at);
      break;
    case "audit":
      work = store.recordAudit(m.fields, m.at).then(() => null);
      break;
    case "flush":
      // Port messages arrive in order: everything sent before this one is queued by now.
      work = store.flushCommits().then(() => null);
      break;
  }
  work.then(
    (outcome) => reply({ id: m.id, ok: true, outcome: outcome as never }),
    (e: unknown) => reply({ id: m.id, ok: false, error: sendError(e) }),
  );
}

post({ kind: "ready" });
