import { z } from "zod";
import { normaliseSerial } from "../core/serial.js";
import { httpsRequest, type HttpAnswer } from "./ca-client.js";
import { AgentError } from "./errors.js";

/**
 * The agent's side of GET /v1/renewal-info/:serial (fleetca's form of RFC 9773's renewalInfo):
 * ask the CA when to renew, and pick a moment in the window it suggests.
 */

export type RenewalInfoStatus = "good" | "revoked" | "expired";

/** The CA's suggestion for one certificate, validated. */
export interface RenewalInfo {
  /** RFC 9773 §4.2 suggestedWindow; end is after start. */
  start: Date;
  end: Date;
  status: RenewalInfoStatus;
  /** When to ask again (RFC 9773 §4.3), clamped to [1 min, 1 day]. */
  retryAfterMs: number;
  explanation?: string;
}

/** RFC 9773 §4.3: clients keep the polling interval between a minute and a day whatever the server says. */
export const MIN_RETRY_AFTER_MS = 60_000;
export const MAX_RETRY_AFTER_MS = 24 * 3_600_000;
/** The CA's own default poll interval, used when no Retry-After reached us (see retryAfterOf). */
export const DEFAULT_RETRY_AFTER_MS = 5 * 60_000;

/**
 * The response body. Types and timestamps are checked strictly; members this agent does not know
 * are ignored, so a CA that adds one (as RFC 9773 §4.2 lets it) does not break old agents.
 */
const RenewalInfoBody = z.object({
  suggestedWindow: z.object({
    start: z.iso.datetime({ offset: true }),
    end: z.iso.datetime({ offset: true }),
  }),
  explanation: z.string().max(4096).optional(),
  status: z.enum(["good", "revoked", "expired"]),
});

/**
 * GET {caUrl}/v1/renewal-info/{serial}, trusting only `rootsPem`. Rejects with AgentError when
 * the CA cannot be reached, refuses (status carried), or answers something that is not a valid
 * RenewalInfo (RFC 9773 §4.2: treat it as no answer; the caller falls back to its own schedule).
 */
export async function fetchRenewalInfo(caUrl: string, rootsPem: string, serialHex: string, timeoutMs = 10_000): Promise<RenewalInfo> {
  const serial = normaliseSerial(serialHex);
  if (!serial) throw new AgentError(`renewal info: "${serialHex.slice(0, 60)}" is not a certificate serial`);
  const r = await httpsRequest(`${caUrl.replace(/\/+$/, "")}/v1/renewal-info/${serial}`, { method: "GET", ca: rootsPem, timeoutMs });
  const text = r.body.toString("utf8");
  if (r.status !== 200) {
    let reason = text.slice(0, 300);
    try {
      const j = JSON.parse(text) as { error?: string; message?: string };
      reason = [j.error, j.message].filter(Boolean).join(": ");
    } catch {
      /* not JSON: keep the raw text */
    }
    throw new AgentError(`renewal info for ${serial} refused by the CA (HTTP ${r.status}): ${reason}`, r.status >= 500 || r.status === 429 ? "ca_error" : "bad_request", r.status);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new AgentError(`renewal info for ${serial}: the CA's answer is not JSON`, "bad_answer");
  }
  const parsed = RenewalInfoBody.safeParse(json);
  if (!parsed.success) throw new AgentError(`renewal info for ${serial}: malformed answer (${parsed.error.issues[0]?.path.join(".") || "body"}: ${parsed.error.issues[0]?.message})`, "bad_answer");
  const start = new Date(parsed.data.suggestedWindow.start);
  const end = new Date(parsed.data.suggestedWindow.end);
  // RFC 9773 §4.2: a window whose end does not follow its start is invalid; clients MUST treat it
  // as though no answer came.
  if (!(end.getTime() > start.getTime())) throw new AgentError(`renewal info for ${serial}: the suggested window ends before it starts`, "bad_answer");
  return {
    start,
    end,
    status: parsed.data.status,
    retryAfterMs: retryAfterOf(r, new Date()),
    ...(parsed.data.explanation !== undefined && { explanation: parsed.data.explanation }),
  };
}

/** The answer's Retry-After; without one (or an unreadable one), the CA's documented default poll interval. */
function retryAfterOf(r: HttpAnswer, now: Date): number {
  const raw = r.headers?.["retry-after"];
  const value = Array.isArray(raw) ? raw[0] : raw;
  return value === undefined ? DEFAULT_RETRY_AFTER_MS : parseRetryAfter(value, now) ?? DEFAULT_RETRY_AFTER_MS;
}

/**
 * RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date; in ms from `now`, clamped to
 * RFC 9773 §4.3's [1 min, 1 day]. Null when it is neither form.
 */
export function parseRetryAfter(value: string, now: Date): number | null {
  const v = value.trim();
  let ms: number;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const at = Date.parse(v);
    if (Number.isNaN(at) || !/GMT$/.test(v)) return null;
    ms = at - now.getTime();
  }
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, ms));
}

/**
 * When to renew, given the CA's window (RFC 9773 §4.2): a uniformly random moment in it, so a
 * fleet told the same window spreads its renewals over it. A window that has already begun leaves
 * only its rest: now + random × (end − now); one that has ended means now. Never before `now`.
 * `random` in [0, 1), as Math.random() gives (injected so the policy is testable).
 */
export function pickRenewalTime(info: Pick<RenewalInfo, "start" | "end">, now: Date, random: number): Date {
  const r = Math.min(Math.max(random, 0), 1);
  const from = Math.max(info.start.getTime(), now.getTime());
  const span = Math.max(0, info.end.getTime() - from);
  return new Date(from + r * span);
}
