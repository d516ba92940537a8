import type { Clock } from "../core/clock.js";
import { OperatorError } from "../core/errors.js";
import type { RenewalWindow } from "../core/renewal-window.js";
import { normaliseSerial } from "../core/serial.js";
import type { RenewalSelectorKind, RenewalWindowOverride, RenewalWindowStore } from "../storage/ports.js";

/** Which certificates `fleetca renew-window` names, as validated against the CA's own records. */
export interface RenewalSelector {
  kind: RenewalSelectorKind;
  value: string;
}

/**
 * The shortest pull-forward accepted: a window of seconds would have a fleet renew in lockstep,
 * which is what the window's spread is there to avoid (RFC 9773 §4.2: clients pick a random
 * moment inside it).
 */
export const MIN_PULL_MS = 60_000;

/** What the CA knows that the selector must name. */
export interface SelectorCatalog {
  issuerKeyIds: readonly string[];
  provisioners: readonly string[];
  hasCertificate(serial: string): boolean;
}

/** Exactly one of --issuer, --provisioner, --serial, naming something this CA has. */
export function renewalSelectorOf(o: { issuer?: string; provisioner?: string; serial?: string }, known: SelectorCatalog): RenewalSelector {
  const given = (["issuer", "provisioner", "serial"] as const).filter((k) => o[k] !== undefined);
  if (given.length !== 1) throw new OperatorError("give exactly one of --issuer, --provisioner, --serial");
  const kind = given[0]!;
  const text = o[kind]!.trim();
  if (kind === "issuer") {
    // Key ids as `fleetca init` prints them (lower-case hex SKI); colons and case forgiven.
    const keyId = text.toLowerCase().replace(/:/g, "");
    if (!known.issuerKeyIds.includes(keyId)) throw new OperatorError(`--issuer: no issuer with key id "${text.slice(0, 80)}" (known: ${known.issuerKeyIds.join(", ")})`);
    return { kind, value: keyId };
  }
  if (kind === "provisioner") {
    if (!known.provisioners.includes(text)) throw new OperatorError(`--provisioner: no provisioner named "${text.slice(0, 80)}" in the config (known: ${known.provisioners.join(", ")})`);
    return { kind, value: text };
  }
  const serial = normaliseSerial(text);
  if (!serial) throw new OperatorError(`--serial: "${text.slice(0, 80)}" is not a serial (hex, as fleetca list prints it)`);
  if (!known.hasCertificate(serial)) throw new OperatorError(`--serial: no certificate with serial ${serial}`);
  return { kind, value: serial };
}

/**
 * Records one override: every certificate the selector names that was issued before now gets the
 * window [now, now + by] unless its own ends sooner (applied when its renewal info is read, not by
 * rewriting its row). Returns how many live certificates it names, and the window.
 */
export async function pullRenewalWindows(
  store: RenewalWindowStore,
  selector: RenewalSelector,
  byMs: number,
  clock: Clock,
): Promise<{ matched: number; window: RenewalWindow }> {
  const { override, window } = renewalPull(selector, byMs, clock);
  const { matched } = await store.recordRenewalOverride(override, override.createdAt);
  return { matched, window };
}

/**
 * The override a pull records, checked, and its window: for a caller that records it inside a
 * transaction of its own (SqliteRenewalWindows.recordOverride), as pullRenewalWindows would.
 */
export function renewalPull(selector: RenewalSelector, byMs: number, clock: Clock): { override: RenewalWindowOverride; window: RenewalWindow } {
  if (byMs < MIN_PULL_MS) throw new OperatorError("--by: must be at least 1m, so the fleet's renewals spread over the window");
  const now = clock.now();
  const window = { start: now, end: new Date(now.getTime() + byMs) };
  return { override: { ...selector, ...window, createdAt: now }, window };
}
