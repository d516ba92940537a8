import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import { defaultRenewalWindow, type RenewalWindow } from "../core/renewal-window.js";
import { normaliseSerial } from "../core/serial.js";
import type { RenewalInfoLookup, RenewalSubject } from "../storage/ports.js";

/** RFC 9773 §4.2 status as fleetca reports it beside the window. */
export type RenewalStatus = "good" | "revoked" | "expired";

/** What GET /v1/renewal-info/:serial answers (RFC 9773 §4.2's RenewalInfo, plus `status`). */
export interface RenewalInfo {
  suggestedWindow: RenewalWindow;
  explanation?: string;
  status: RenewalStatus;
  /** Seconds until the client should ask again (RFC 9773 §4.3: the Retry-After header). */
  retryAfterSeconds: number;
}

/** How often a client with nothing urgent polls (RFC 9773 §4.3: the server sets it with Retry-After). */
export const DEFAULT_POLL_SECONDS = 300;
/**
 * Never ask a client to poll more often than once a minute: RFC 9773 §4.3 has clients clamp
 * Retry-After to at least a minute anyway, and a fleet whose windows opened at once (revocation,
 * `fleetca renew-window`) should be renewing, not polling.
 */
export const MIN_POLL_SECONDS = 60;
/**
 * A window that has to open now (revoked or expired certificate) still needs an end after its
 * start (RFC 9773 §4.2); a minute spreads a fleet's immediate renewals a little.
 */
const IMMEDIATE_WINDOW_MS = 60_000;

/**
 * The CA's renewal suggestion for one certificate: the default 2/3-of-life window, pulled forward
 * by a `fleetca renew-window` override recorded after the certificate was issued, or "now" for a
 * certificate that can no longer be relied on.
 */
export class RenewalInfoService {
  constructor(
    private readonly store: RenewalInfoLookup,
    private readonly clock: Clock,
  ) {}

  /** serialText as the URL carries it; bad_request when it is not a serial, not_found when unknown. */
  async renewalInfo(serialText: string): Promise<RenewalInfo> {
    const serial = normaliseSerial(serialText);
    if (!serial) throw new CaError("bad_request", "serial must be hex, as fleetca returned it");
    const subject = await this.store.renewalSubject(serial);
    if (!subject) throw new CaError("not_found", `no certificate with serial ${serial}`);
    return renewalInfoOf(subject, this.clock.now());
  }
}

/** The suggestion for a stored certificate at `now`; pure, so the policy is testable on its own. */
export function renewalInfoOf(s: RenewalSubject, now: Date): RenewalInfo {
  if (s.status === "revoked" || s.notAfter.getTime() <= now.getTime()) {
    // RFC 9773 §4.2: a window that has begun means "renew now"; this one begins at `now`.
    const status: RenewalStatus = s.status === "revoked" ? "revoked" : "expired";
    return {
      suggestedWindow: { start: now, end: new Date(now.getTime() + IMMEDIATE_WINDOW_MS) },
      explanation: status === "revoked" ? "the certificate has been revoked: replace it now" : "the certificate has expired: replace it now",
      status,
      retryAfterSeconds: MIN_POLL_SECONDS,
    };
  }
  const normal = defaultRenewalWindow(s.notBefore, s.notAfter);
  // An override only ever pulls the window forward: a certificate whose own window ends first keeps it.
  const pulled = s.override && s.override.end.getTime() < normal.end.getTime() ? s.override : null;
  const suggestedWindow = pulled ? { start: pulled.start, end: pulled.end } : normal;
  return {
    suggestedWindow,
    ...(pulled && { explanation: `renewal window pulled forward by the CA operator (${pulled.kind} ${pulled.value}, at ${pulled.createdAt.toISOString()})` }),
    status: "good",
    retryAfterSeconds: retryAfterSeconds(suggestedWindow, now),
  };
}

/**
 * RFC 9773 §4.3: poll every DEFAULT_POLL_SECONDS, sooner when the window opens before that (so a
 * client learns of a change before it acts), never more often than MIN_POLL_SECONDS.
 */
function retryAfterSeconds(w: RenewalWindow, now: Date): number {
  const untilStart = Math.ceil((w.start.getTime() - now.getTime()) / 1000);
  return Math.min(DEFAULT_POLL_SECONDS, Math.max(MIN_POLL_SECONDS, untilStart));
}
