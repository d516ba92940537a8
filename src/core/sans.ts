import { isIP } from "node:net";
import { CaError } from "./errors.js";

/** Subject alternative names by kind, normalised: DNS lower-case, IPs canonical, URIs as given. */
export interface Sans {
  dns: string[];
  ip: string[];
  uri: string[];
}

export type SanKind = keyof Sans;

export function emptySans(): Sans {
  return { dns: [], ip: [], uri: [] };
}

export function sanCount(s: Sans): number {
  return s.dns.length + s.ip.length + s.uri.length;
}

// RFC 1035 §2.3.1 preferred syntax (LDH labels), as relaxed by RFC 1123 §2.1 to allow a leading digit.
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

export function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((l) => DNS_LABEL.test(l));
}

/** Canonical text of an IP SAN so "::1" and "0:0:0:0:0:0:0:1" compare equal. */
export function canonicalIp(ip: string): string {
  if (isIP(ip) === 4) return ip.split(".").map((o) => String(Number(o))).join(".");
  const url = new URL(`http://[${ip}]/`);
  return url.hostname.slice(1, -1);
}

/**
 * A URI SAN must be an absolute URI (RFC 5280 §4.2.1.6) of printable ASCII with no user info or
 * fragment; SPIFFE IDs (spiffe://trust-domain/path) are the common case.
 */
export function isUriSan(uri: string): boolean {
  // Printable ASCII only: the SAN is an IA5String (RFC 5280 §4.2.1.6), and an IRI must be mapped
  // to a URI (RFC 3987 §3.1) by the requester, not guessed at by the CA.
  if (uri.length > 2048 || /[^\x21-\x7e]/.test(uri)) return false;
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#@]+/i.test(uri)) return false;
  try {
    const u = new URL(uri);
    return u.username === "" && u.password === "" && u.hash === "";
  } catch {
    return false;
  }
}

/**
 * Classifies one SAN as a command line or token writes it: an IP literal, a URI (has "://"),
 * else a DNS name. Throws bad_request when it is none of them, with the SAN in the message
 * (SANs are not secret).
 */
export function classifySan(raw: string): { kind: SanKind; value: string } {
  const v = raw.trim();
  if (isIP(v)) return { kind: "ip", value: canonicalIp(v) };
  if (v.includes("://")) {
    if (!isUriSan(v)) throw new CaError("bad_request", `invalid URI SAN "${v.slice(0, 80)}"`);
    return { kind: "uri", value: v };
  }
  const d = v.toLowerCase().replace(/\.$/, "");
  if (!isDnsName(d)) throw new CaError("bad_request", `invalid DNS SAN "${v.slice(0, 80)}"`);
  return { kind: "dns", value: d };
}

export function sansFromList(list: readonly string[]): Sans {
  const out = emptySans();
  for (const raw of list) {
    const { kind, value } = classifySan(raw);
    if (!out[kind].includes(value)) out[kind].push(value);
  }
  return out;
}

export function sansToList(s: Sans): string[] {
  return [...s.dns, ...s.ip, ...s.uri];
}

/** True when every name in `inner` is also in `outer` (same kind, normalised). */
export function sansSubset(inner: Sans, outer: Sans): boolean {
  return (["dns", "ip", "uri"] as const).every((k) => inner[k].every((v) => outer[k].includes(v)));
}

export function sansEqual(a: Sans, b: Sans): boolean {
  return sansSubset(a, b) && sansSubset(b, a);
}
