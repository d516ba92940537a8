import { pino, type Logger } from "pino";

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
