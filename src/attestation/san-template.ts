import { CaError } from "../core/errors.js";
import { classifySan, emptySans, type Sans } from "../core/sans.js";
import { claimAt, claimText } from "./claims.js";

/** Templates per SAN kind, e.g. dns: ["{google.compute_engine.instance_name}.c.{google.compute_engine.project_id}.internal"]. */
export interface SanTemplates {
  dns: string[];
  uri: string[];
}

const PLACEHOLDER = /\{([^{}]+)\}/g;

/**
 * What a substituted claim value may look like. A claim can only ever fill one label of a DNS name
 * or one segment of a URI path: no ".", "/", "*", "%", space or control character, so a platform
 * identity can never widen the name it is given (e.g. instance "a.b" claiming zone b's names).
 */
const CLAIM_CHARSET: Record<keyof SanTemplates, RegExp> = {
  // RFC 1123 §2.1 label, compared lower-case.
  dns: /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/,
  // RFC 3986 §2.3 unreserved characters minus "." (so no "." / ".." segments either).
  uri: /^[A-Za-z0-9_~-]{1,128}$/,
};

/** Validates templates at start-up: balanced braces, and a name that is valid once filled in. */
export function checkTemplates(t: SanTemplates, literals: Record<string, string> = {}): string | null {
  for (const kind of ["dns", "uri"] as const) {
    for (const tpl of t[kind]) {
      if (/[{}]/.test(tpl.replace(PLACEHOLDER, ""))) return `${kind} template "${tpl}" has unbalanced braces`;
      const sample = tpl.replace(PLACEHOLDER, (_m, name: string) => literals[name] ?? "x1");
      try {
        if (classifySan(sample).kind !== kind) return `${kind} template "${tpl}" does not make a ${kind.toUpperCase()} name`;
      } catch {
        return `${kind} template "${tpl}" does not make a valid ${kind.toUpperCase()} name`;
      }
    }
  }
  return null;
}

/**
 * Renders the SANs a verified token may hold. `literals` are operator-configured values (e.g.
 * trustDomain) and `aliases` map short names to claim paths ({namespace} → kubernetes.io.namespace).
 * A missing claim or a claim outside the charset refuses the token (403): better no certificate
 * than a name the platform did not vouch for.
 */
export function renderSans(
  t: SanTemplates,
  payload: unknown,
  opts: { literals?: Record<string, string>; aliases?: Record<string, string> } = {},
): Sans {
  const out = emptySans();
  for (const kind of ["dns", "uri"] as const) {
    for (const tpl of t[kind]) {
      const name = tpl.replace(PLACEHOLDER, (_m, ref: string) => {
        const literal = opts.literals?.[ref];
        if (literal !== undefined) return literal;
        const path = opts.aliases?.[ref] ?? ref;
        const text = claimText(claimAt(payload, path));
        if (text === undefined) throw new CaError("forbidden", `token has no usable claim "${path}" for the SAN template`);
        const value = kind === "dns" ? text.toLowerCase() : text;
        if (!CLAIM_CHARSET[kind].test(value)) {
          throw new CaError("forbidden", `claim "${path}" has characters not allowed in a ${kind.toUpperCase()} SAN`);
        }
        return value;
      });
      let c;
      try {
        c = classifySan(name);
      } catch {
        throw new CaError("forbidden", `SAN template "${tpl}" rendered an invalid name`);
      }
      if (c.kind !== kind) throw new CaError("forbidden", `SAN template "${tpl}" rendered a name of the wrong type`);
      if (!out[kind].includes(c.value)) out[kind].push(c.value);
    }
  }
  return out;
}

/** CLAIM_CHARSET as a pattern to embed (no anchors), for the analysis below. */
const CLAIM_PATTERN: Record<keyof SanTemplates, string> = {
  dns: "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?",
  uri: "[A-Za-z0-9_~-]{1,128}",
};

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");

/**
 * Whether some token could make template `tpl` render `san`: each claim placeholder stands for
 * any value renderSans would accept (one label / segment of CLAIM_CHARSET), narrowed to the
 * values the provisioner insists on where it does (`fixed`, claim path → accepted values: a jwt
 * provisioner's requiredClaims, a kubernetes provisioner's namespaces). Used at config load to
 * refuse a provisioner whose templates could mint an admin SAN (`spiffe://example.org/{sub}` with
 * sub = "admin") unless its config says `mayIssueAdmin: true`.
 *
 * Case-insensitive, to err on the side of refusing: a case variant is the same name to relying
 * parties that fold scheme and host (RFC 3986 §6.2.2.1) or DNS names (RFC 4343). The rendered
 * name is trimmed and, for DNS, lower-cased and stripped of one trailing dot (classifySan), so
 * `san + "."` is tried too.
 */
export function templateCanRender(
  kind: keyof SanTemplates,
  tpl: string,
  san: string,
  opts: { literals?: Record<string, string>; aliases?: Record<string, string>; fixed?: Record<string, readonly string[]> } = {},
): boolean {
  let pattern = "";
  let last = 0;
  for (const m of tpl.matchAll(PLACEHOLDER)) {
    pattern += escapeRegExp(tpl.slice(last, m.index));
    last = m.index + m[0].length;
    const ref = m[1]!;
    const literal = opts.literals?.[ref];
    if (literal !== undefined) {
      pattern += escapeRegExp(literal);
      continue;
    }
    const fixed = opts.fixed?.[opts.aliases?.[ref] ?? ref];
    if (fixed === undefined) {
      pattern += CLAIM_PATTERN[kind];
      continue;
    }
    // Only the accepted values that renderSans would let through (lower-cased for DNS).
    const usable = fixed.map((v) => (kind === "dns" ? v.toLowerCase() : v)).filter((v) => CLAIM_CHARSET[kind].test(v));
    if (usable.length === 0) return false; // this template can never render anything
    pattern += `(?:${usable.map(escapeRegExp).join("|")})`;
  }
  pattern += escapeRegExp(tpl.slice(last));
  const re = new RegExp(`^\\s*(?:${pattern})\\s*$`, "i");
  return re.test(san) || (kind === "dns" && re.test(`${san}.`));
}
