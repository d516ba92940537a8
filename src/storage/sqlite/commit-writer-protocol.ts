import type { AuditFields, IntentFields } from "../../audit/audit-entry.js";
import { CaError, type CaErrorCode } from "../../core/errors.js";
import type { CommitOutcome, IssuanceCommit } from "../ports.js";

/**
 * Messages between a SqliteStore and its writer thread (commit-writer.ts, commit-writer-thread.ts).
 * Everything in them survives the structured clone as it is: Dates stay Dates, a Buffer arrives as
 * a Uint8Array (the store copies DER with Buffer.from).
 */
export type WriterRequest =
  | { id: number; op: "issuance"; commit: IssuanceCommit }
  | { id: number; op: "intent"; intent: IntentFields; at: Date }
  | { id: number; op: "audit"; fields: AuditFields; at: Date }
  /** Answered once everything sent before it has been committed (or refused). */
  | { id: number; op: "flush" };

/** The requests of one loop turn of the sending thread, in one message. */
export type WriterRequests = WriterRequest[];

export type WriterReply = { id: number; ok: true; outcome: CommitOutcome | null } | { id: number; ok: false; error: SentError };

export type WriterMessage =
  | { kind: "ready" }
  /** Replies of one loop turn in one message: one postMessage per batch, not per request. */
  | { kind: "replies"; replies: WriterReply[] }
  | { kind: "batch"; size: number; ms: number; committed: boolean; cause?: SentError };

export interface WriterSettings {
  path: string;
  maxBatch: number;
}

/** An error as it crosses the thread boundary: CaError keeps its code, anything else its name. */
export interface SentError {
  name: string;
  message: string;
  /** CaError's code ("unavailable"), when it was one. */
  caCode?: CaErrorCode;
  /** SQLite's result code (SQLITE_BUSY, …), when it came from the database. */
  sqliteCode?: string;
  cause?: SentError;
}

export function sendError(e: unknown): SentError {
  if (!(e instanceof Error)) return { name: "Error", message: String(e) };
  const code = (e as { code?: unknown }).code;
  return {
    name: e.name,
    message: e.message,
    ...(e instanceof CaError && { caCode: e.code }),
    ...(typeof code === "string" && code.startsWith("SQLITE_") && { sqliteCode: code }),
    ...(e.cause !== undefined && { cause: sendError(e.cause) }),
  };
}

export function receiveError(s: SentError): Error {
  const cause = s.cause ? receiveError(s.cause) : undefined;
  if (s.caCode) return new CaError(s.caCode, s.message, cause ? { cause } : undefined);
  const e = new Error(s.message, cause ? { cause } : undefined);
  e.name = s.name;
  if (s.sqliteCode) (e as Error & { code?: string }).code = s.sqliteCode;
  return e;
}
