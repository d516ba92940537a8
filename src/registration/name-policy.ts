import { isIP } from "node:net";
import { CaError } from "../core/errors.js";
import { isDnsName, type Sans } from "../core/sans.js";

/**
 * The CA-wide name policy (config `policy:`): which names any certificate of this CA may carry,
 * whatever a provisioner would allow. Checked on the exact SANs that go into the certificate, at
 * issuance and at renewal, after the provisioner's own decision and before anything is recorded
 * or signed. step-ca's x509 policy and RFC 5280 §4.2.1.10 name constraints are the model: a deny
 * rule wins over an allow rule; when an allow list is given for a kind of name, names of that kind
 * outside it are refused (permittedSubtrees semantics); no rules for a kind = no restriction.
 */
export interface NamePolicyConfig {
  dns?: { allow?: string[] | undefined; deny?: string[] | undefined } | undefined;
  ip?: { allow?: string[] | undefined; deny?: string[] | undefined } | undefined;
  uri?: { allow?: string[] | undefined; deny?: string[] | undefined } | undefined;
}

type Kind = "dns" | "ip" | "uri";

interface Rule<T> {
  /** As configured, for the refusal message. */
  text: string;
  matches(name: T): boolean;
}

// ---------------------------------------------------------------------------------------------
// DNS: suffixes on label boundaries.

/**
 * `example.org` matches example.org and every name below it, as RFC 5280 §4.2.1.10 defines a DNS
 * name constraint ("adding zero or more labels to the left-hand side"); `.example.org` matches only
 * names below it (the leading-period form RFC 5280 gives URI hosts, and Go's crypto/x509 DNS
 * constraints). Matching is on whole labels, so example.org never matches badexample.org.
 */
export function parseDnsRule(text: string): Rule<string> {
  if (text.includes("*")) throw new Error(`"${text}": wildcards are not rules; write example.org (the name and its subdomains) or .example.org (subdomains only)`);
  const subdomainsOnly = text.startsWith(".");
  // DNS names compare case-insensitively (RFC 4343); a trailing dot names the same (absolute) name.
  const base = (subdomainsOnly ? text.slice(1) : text).toLowerCase().replace(/\.$/, "");
  if (!isDnsName(base)) throw new Error(`"${text}" is not a DNS name or .suffix`);
  return {
    text,
    matches: (name) => name.endsWith(`.${base}`) || (!subdomainsOnly && name === base),
  };
}

// ---------------------------------------------------------------------------------------------
// IP: CIDR ranges, IPv4 and IPv6.

interface IpAddress {
  version: 4 | 6;
  value: bigint;
}

const IP_BITS = { 4: 32, 6: 128 } as const;

function ipv4Value(text: string): bigint {
  return text.split(".").reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
}

/** 16 octets of an IPv6 address; the embedded-IPv4 form (::ffff:1.2.3.4) included. */
function ipv6Value(text: string): bigint {
  // The WHATWG URL parser is node's RFC 4291 §2.2 parser: it turns a trailing dotted quad into
  // two hex groups and compresses; only "::" is left to expand.
  const hex = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  const [head, tail] = hex.includes("::") ? hex.split("::") : [hex, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function parseIp(text: string): IpAddress | null {
  // Zone ids (fe80::1%eth0) name an interface of one host, never a certificate's address.
  if (text.includes("%")) return null;
  const v = isIP(text);
  if (v === 4) return { version: 4, value: ipv4Value(text) };
  if (v === 6) return { version: 6, value: ipv6Value(text) };
  return null;
}

/** ::ffff:a.b.c.d (RFC 4291 §2.5.5.2) is the IPv4 host a.b.c.d to every dual-stack socket. */
function ipv4Mapped(ip: IpAddress): IpAddress | null {
  if (ip.version !== 6 || ip.value >> 32n !== 0xffffn) return null;
  return { version: 4, value: ip.value & 0xffffffffn };
}

/**
 * `10.0.0.0/8`, `fd00::/8`, or one address (`10.1.2.3` = /32, `::1` = /128). Host bits set below
 * the prefix (`10.0.0.1/8`) are refused rather than masked: the operator meant something else.
 * An IPv4 range also matches the IPv4-mapped IPv6 form of its addresses, so `::ffff:10.0.0.1`
 * cannot slip past a deny of 10.0.0.0/8 (RFC 5280 §4.2.1.10 compares octet strings of one length
 * only, which would let it).
 */
export function parseCidr(text: string): Rule<IpAddress> {
  const slash = text.indexOf("/");
  const addr = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!addr) throw new Error(`"${text}" is not an IP address or CIDR range (e.g. 10.0.0.0/8, fd00::/8)`);
  const bits = IP_BITS[addr.version];
  const lenText = slash < 0 ? String(bits) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) throw new Error(`"${text}": the prefix length must be 0..${bits}`);
  const len = BigInt(lenText);
  const hostBits = BigInt(bits) - len;
  const network = (addr.value >> hostBits) << hostBits;
  if (network !== addr.value) throw new Error(`"${text}" has host bits set below /${lenText}`);
  const inRange = (ip: IpAddress) => ip.version === addr.version && ip.value >> hostBits === network >> hostBits;
  return {
    text,
    matches: (ip) => {
      const mapped = ipv4Mapped(ip);
      return inRange(ip) || (mapped !== null && inRange(mapped));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// URI: prefixes compared on parsed, normalised parts.

interface ParsedUri {
  scheme: string;
  authority: string;
  path: string;
}

/**
 * Splits an absolute URI with an authority (RFC 3986 §3) and normalises what RFC 3986 §6.2.2
 * lets differ for one resource: scheme and host case, percent-encoded unreserved characters, a
 * trailing dot on the host. Returns null for what cannot be compared safely: userinfo, a
 * percent-encoded "/" (a segment boundary some readers decode and others do not), and "." or
 * ".." segments (RFC 3986 §5.2.4 removes them, so a/b/../c names a/c to a reader that resolves
 * it while the raw text starts with a/b/).
 */
function parseUri(text: string): ParsedUri | null {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?[^#]*)?$/.exec(text);
  if (!m) return null;
  const [, scheme, rawAuthority, rawPath] = m as unknown as [string, string, string, string];
  if (rawAuthority.includes("@") || rawAuthority.includes("%") || rawAuthority === "") return null;
  const hostPort = /^(\[[^\]]+\]|[^:]*)(?::(\d*))?$/.exec(rawAuthority);
  if (!hostPort) return null;
  const host = hostPort[1]!.toLowerCase().replace(/\.$/, "");
  const port = hostPort[2] ? `:${hostPort[2]}` : "";
  if (/%2f/i.test(rawPath)) return null;
  const path = rawPath.replace(/%([0-9A-Fa-f]{2})/g, (pct, h: string) => {
    const c = String.fromCharCode(parseInt(h, 16));
    return /[A-Za-z0-9._~-]/.test(c) ? c : pct.toUpperCase();
  });
  if (path.split("/").some((s) => s === "." || s === "..")) return null;
  return { scheme: scheme.toLowerCase(), authority: host + port, path };
}

/**
 * `spiffe://example.org/` (every path under that authority) or `spiffe://example.org/ns/prod`
 * (that path and everything below it, on segment boundaries: not /ns/production). The scheme
 * and authority must be equal, never a prefix of one another, so spiffe://example.org.evil/ and
 * spiffe://example.org:8443/ are outside spiffe://example.org/.
 */
export function parseUriPrefix(text: string): Rule<ParsedUri> {
  const p = parseUri(text);
  if (!p || /[?#]/.test(text)) throw new Error(`"${text}" is not a URI prefix such as spiffe://example.org/ (scheme://host[/path], no query)`);
  const base = p.path.replace(/\/$/, "");
  return {
    text,
    matches: (u) => u.scheme === p.scheme && u.authority === p.authority && (u.path === base || u.path.startsWith(`${base}/`)),
  };
}

// ---------------------------------------------------------------------------------------------

interface KindRules<T> {
  /** undefined: no allow list for this kind, so anything not denied passes. */
  allow: Rule<T>[] | undefined;
  deny: Rule<T>[];
  /** The SAN as a comparable value; null when it cannot be compared (refused). */
  parse(name: string): T | null;
}

/** Where a rule came from, for the refusal message and the config error. */
const KEYS: Record<Kind, string> = { dns: "policy.dns", ip: "policy.ip", uri: "policy.uri" };

/** The compiled policy. `check` is what the RA calls; `refusal` says why, or null. */
export class NamePolicy {
  private constructor(private readonly rules: { dns: KindRules<string>; ip: KindRules<IpAddress>; uri: KindRules<ParsedUri> }) {}

  /** Compiles config `policy` (already validated at load, so a bad rule here is a bug). */
  static fromConfig(c: NamePolicyConfig | undefined): NamePolicy {
    const compile = <T>(parse: (s: string) => Rule<T>, list: string[] | undefined) => list?.map(parse);
    return new NamePolicy({
      dns: { allow: compile(parseDnsRule, c?.dns?.allow), deny: compile(parseDnsRule, c?.dns?.deny) ?? [], parse: (n) => n },
      ip: { allow: compile(parseCidr, c?.ip?.allow), deny: compile(parseCidr, c?.ip?.deny) ?? [], parse: parseIp },
      uri: { allow: compile(parseUriPrefix, c?.uri?.allow), deny: compile(parseUriPrefix, c?.uri?.deny) ?? [], parse: parseUri },
    });
  }

  /** Why these SANs are refused (the first SAN that fails, and the rule), or null when all pass. */
  refusal(sans: Sans): string | null {
    for (const kind of ["dns", "ip", "uri"] as const) {
      const rules = this.rules[kind] as KindRules<unknown>;
      if (rules.allow === undefined && rules.deny.length === 0) continue;
      for (const name of sans[kind]) {
        const value = rules.parse(name);
        if (value === null) return `${kind} SAN "${name}" cannot be compared with ${KEYS[kind]} (not in normal form: dot segments, an encoded "/", or userinfo)`;
        const denied = rules.deny.find((r) => r.matches(value));
        if (denied) return `${kind} SAN "${name}" is denied by ${KEYS[kind]}.deny "${denied.text}"`;
        if (rules.allow !== undefined && !rules.allow.some((r) => r.matches(value))) {
          const listed = rules.allow.length === 0 ? "empty: no " + kind + " SANs are allowed" : rules.allow.slice(0, 5).map((r) => r.text).join(", ");
          return `${kind} SAN "${name}" is outside ${KEYS[kind]}.allow (${listed})`;
        }
      }
    }
    return null;
  }

  /** Throws `forbidden` (403) naming the SAN and the rule; SANs are not secret. */
  check(sans: Sans): void {
    const why = this.refusal(sans);
    if (why !== null) throw new CaError("forbidden", `name_policy: ${why}`);
  }
}

/** For config validation: the problem with one rule of `kind`, or null. */
export function namePolicyRuleProblem(kind: Kind, text: string): string | null {
  try {
    ({ dns: parseDnsRule, ip: parseCidr, uri: parseUriPrefix })[kind](text);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
