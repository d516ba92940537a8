import { pino, type Logger } from "pino";
import { CaError } from "../core/errors.js";

export type LogFormat = "logfmt" | "json";

/**
 * Anything that could carry a secret is censored by path before a line is written (DESIGN habit
 * 10); Secret values also redact themselves when serialised.
 */
const SECRET_FIELDS = [
  // Bearer tokens and the headers that carry them.
  "authorization",
  "cookie",
  "token",
  "jwt",
  // Key material and what unwraps it.
  "key",
  "privateKey",
  "privateKeyPem",
  "passphrase",
  "password",
  "secret",
  "kek",
];
/** Each field at the top level and one level down (`{ req: { token } }`); request headers wherever a request is logged. */
const REDACT = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  "headers.authorization",
  "headers.cookie",
  "*.headers.authorization",
  "*.headers.cookie",
];

/**
 * `err` as pino writes it (type, message, stack, cause), except the storage being unavailable:
 * while PostgreSQL is down or failing over every periodic task (CRL ticks, rate-limit flushes,
 * OCSP pre-signing) logs that failure on each attempt, and the same stack every few seconds
 * buries the one line that says what is wrong. That line keeps the message and its cause's
 * message and code (ECONNREFUSED, a SQLSTATE), which is what an operator acts on.
 */
function serializeErr(err: unknown): unknown {
  if (err instanceof CaError && err.code === "unavailable") {
    const cause = err.cause as { message?: unknown; code?: unknown } | undefined;
    return {
      type: err.name,
      code: err.code,
      message: err.message,
      ...(typeof cause?.message === "string" && { cause: cause.message }),
      ...(typeof cause?.code === "string" && { causeCode: cause.code }),
    };
  }
  return pino.stdSerializers.err(err as Error);
}

/**
 * Logs to stdout as logfmt (SPEC.md shows `"api listening" url=https://…`) or pino's JSON.
 * logfmt is rendered from pino's JSON line, so redaction applies to both.
 */
export function createLogger(opts: { level: string; format: LogFormat; write?: (line: string) => void }): Logger {
  const write = opts.write ?? ((line: string) => process.stdout.write(line));
  const stream = opts.format === "json" ? { write } : { write: (line: string) => write(jsonToLogfmt(line)) };
  return pino(
    {
      level: opts.level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: "[REDACTED]" },
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeErr },
    },
    stream,
  );
}

export function jsonToLogfmt(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { time, level, msg, ...rest } = rec;
  const parts = [`time=${String(time)}`, `level=${String(level)}`, `msg=${quote(String(msg ?? ""))}`];
  for (const [k, v] of Object.entries(rest)) parts.push(`${k}=${quote(typeof v === "string" ? v : JSON.stringify(v))}`);
  return parts.join(" ") + "\n";
}

function quote(v: string): string {
  return /^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v);
}
