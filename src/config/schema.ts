import { z } from "zod";
import { CA_KEY_TYPES } from "../core/key-type.js";
import { parseDuration } from "../core/duration.js";
import { classifySan, isDnsName } from "../core/sans.js";
import { PLATFORM_ALGORITHMS } from "../attestation/platform-token.js";
import { checkTemplates, templateCanRender } from "../attestation/san-template.js";
import { DEFAULT_K8S_SANS, K8S_CLAIMS } from "../attestation/kubernetes.js";
import type { AdminIdentity } from "../attestation/admin-sans.js";
import { namePolicyRuleProblem } from "../registration/name-policy.js";
import { publicUrlFromListen } from "./public-url.js";
import { urlTlsProblem } from "../storage/postgres/pg-url-tls.js";

/** "10m" → ms, with the offending text in the message when it is not a duration. */
const duration = z.string().transform((s, ctx) => {
  try {
    return parseDuration(s);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

/** host:port with a numeric port (0 = any free port); IPv6 hosts in brackets. */
const listenAddress = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected host:port, e.g. 127.0.0.1:8443")
  .refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, "port must be 0..65535");

const baseUrl = (schemes: string[]) =>
  z.string().refine((s) => {
    try {
      const u = new URL(s);
      return schemes.includes(u.protocol) && !u.search && !u.hash && !u.username;
    } catch {
      return false;
    }
  }, `expected an absolute ${schemes.join(" or ")} URL without query`).transform((s) => s.replace(/\/+$/, ""));

/**
 * storage.url of a PostgreSQL store: postgres:// or postgresql://, a host and a database, query
 * parameters allowed (node-postgres reads sslmode, sslrootcert, … from them; the TLS ones whose
 * meaning would change with the pg version are refused, pg-url-tls.ts). A password in it is
 * refused: the URL is logged and shown by `fleetca status`, and a secret must not be in a URL
 * (storage.passwordFile, or PGPASSWORD, hold it instead).
 */
const postgresUrl = z.string().superRefine((s, ctx) => {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    ctx.addIssue({ code: "custom", message: "expected postgres://USER@HOST:PORT/DATABASE" });
    return;
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") ctx.addIssue({ code: "custom", message: "expected a postgres:// or postgresql:// URL" });
  else if (u.password) ctx.addIssue({ code: "custom", message: "must not hold a password: put it in storage.passwordFile (or PGPASSWORD)" });
  else if (!u.hostname) ctx.addIssue({ code: "custom", message: "must name a host" });
  else if (u.pathname.length <= 1) ctx.addIssue({ code: "custom", message: "must name a database (postgres://USER@HOST:PORT/DATABASE)" });
  else {
    const tls = urlTlsProblem(u);
    if (tls) ctx.addIssue({ code: "custom", message: tls });
  }
});

/**
 * Where the CA's state lives. SQLite (the default): dataDir/fleetca.db, one machine, nothing to
 * run. PostgreSQL: a database shared by several replicas (docs/ha.md), which then keep only their
 * own API serving certificate in dataDir.
 */
const storage = z
  .discriminatedUnion("type", [
    z.strictObject({ type: z.literal("sqlite") }),
    z.strictObject({
      type: z.literal("postgres"),
      url: postgresUrl,
      passwordFile: z.string().min(1).optional(),
      /** Connections each process keeps at most. */
      pool: z.number().int().min(1, "must be at least 1").max(1000, "must be at most 1000").default(10),
    }),
  ])
  .prefault({ type: "sqlite" });

/** An admin identity is matched against SANs, so it must be one (classified as the CLI does). */
const adminSan = z.string().refine((s) => {
  try {
    classifySan(s);
    return true;
  } catch {
    return false;
  }
}, "expected a SAN: a DNS name, an IP address or a URI such as spiffe://example.org/admin");

/** The provisioner a plain-string `admins` entry means (SPEC: admins issued through bootstrap). */
export const DEFAULT_ADMIN_PROVISIONER = "bootstrap";

const adminObject = z.strictObject({ provisioner: z.string().min(1), san: adminSan });

/**
 * `{ provisioner: P, san: S }`, or a plain SAN meaning `{ provisioner: bootstrap, san: S }`.
 * Normalised to that object with the SAN as certificates store it, so matching is exact.
 */
const adminEntry = z.unknown().transform((e, ctx): AdminIdentity => {
  if (typeof e !== "string" && (typeof e !== "object" || e === null || Array.isArray(e))) {
    ctx.addIssue({ code: "custom", message: "expected a SAN or { provisioner, san }" });
    return z.NEVER;
  }
  const r = typeof e === "string" ? adminSan.safeParse(e) : adminObject.safeParse(e);
  if (!r.success) {
    for (const i of r.error.issues) {
      const message = i.code === "unrecognized_keys" ? `unknown key(s) ${i.keys.join(", ")}` : i.message;
      ctx.addIssue({ code: "custom", message, path: i.path });
    }
    return z.NEVER;
  }
  const v = r.data;
  return typeof v === "string"
    ? { provisioner: DEFAULT_ADMIN_PROVISIONER, san: classifySan(v).value }
    : { provisioner: v.provisioner, san: classifySan(v.san).value };
});

/** One kind of name in config `policy` (registration/name-policy.ts): allow and deny lists. */
const policyRules = (kind: "dns" | "ip" | "uri") => {
  const rule = z.string().superRefine((s, ctx) => {
    const problem = namePolicyRuleProblem(kind, s);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
  return z.strictObject({ allow: z.array(rule).optional(), deny: z.array(rule).default([]) }).optional();
};

function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const provisionerName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lower-case letters, digits and dashes");

/**
 * What a provisioner decides about its certificates' lives (issue 15; step-ca's per-provisioner
 * claims, Vault's per-role TTLs): lifetimes within the CA-wide `issuance` bounds, and how long a
 * chain of renewals may run on the strength of one attestation.
 */
const lifecycleFields = {
  /** Lifetime when a request names none; default issuance.defaultTTL. */
  defaultTTL: duration.optional(),
  /** Longest lifetime this provisioner's certificates get; default issuance.maxTTL, never above it. */
  maxTTL: duration.optional(),
  /** Its certificates may renew over mTLS (POST /v1/renew). */
  allowRenewal: z.boolean().default(true),
  /**
   * How long a chain of renewals may run from the token that started it before the holder must
   * attest again (a fresh token): a stolen key cannot renew itself forever.
   */
  maxRenewalAge: duration.prefault("30d"),
  /** An expired certificate may still renew (step-ca's allowRenewalAfterExpiry), within maxRenewalAge. */
  renewAfterExpiry: z.boolean().default(false),
};

const bootstrapProvisioner = z.strictObject({
  ...lifecycleFields,
  name: provisionerName,
  type: z.literal("bootstrap"),
  /** Longest lifetime `fleetca token create --ttl` may give a token. */
  maxTokenTTL: duration.prefault("1h"),
  /**
   * Whether tokens created with `fleetca token create --admin` may list admin SANs. On by default:
   * each admin token is itself an explicit, signed operator decision; false shuts even that
   * (a bootstrap provisioner whose tokens automation mints).
   */
  mayIssueAdmin: z.boolean().default(true),
});

const jwksLocation = z
  .strictObject({
    file: z.string().min(1).optional(),
    // Platform keys decide who gets which name: fetching them over plain HTTP from the network
    // would let anyone on the path mint identities. http: only for a loopback simulator.
    url: baseUrl(["http:", "https:"])
      .refine((u) => new URL(u).protocol === "https:" || isLoopbackHost(new URL(u).hostname), "must be https (http only on loopback)")
      .optional(),
    /** Keys are reloaded after this long even when every kid is known. */
    maxAge: duration.prefault("10m"),
    /** An unknown kid reloads the keys at most once per this interval. */
    refetchCooldown: duration.prefault("30s"),
  })
  .refine((j) => !j.file !== !j.url, "give exactly one of file or url");

const algorithms = z
  .array(
    z.string().refine((a) => (PLATFORM_ALGORITHMS as readonly string[]).includes(a), {
      message: `must be one of ${PLATFORM_ALGORITHMS.join(", ")} (HMAC and "none" are never allowed)`,
    }),
  )
  .min(1);

const sanTemplates = z.strictObject({ dns: z.array(z.string().min(1)).default([]), uri: z.array(z.string().min(1)).default([]) });

/** Fields every platform-token provisioner shares (jwt, kubernetes). */
const platformFields = {
  ...lifecycleFields,
  name: provisionerName,
  issuer: z.string().min(1),
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((a) => (Array.isArray(a) ? a : [a])),
  jwks: jwksLocation,
  algorithms: algorithms.default(["ES256", "RS256", "EdDSA"]),
  /** Refuse tokens whose iat is older than this. */
  maxTokenAge: duration.optional(),
  /** Clock skew for this platform; defaults to tokens.leeway. */
  leeway: duration.optional(),
  /** "absent": the platform never sets jti, so a token is used once per (iss, sub, iat). */
  jti: z.enum(["required", "absent"]).default("required"),
  /** Whether this provisioner may issue admin SANs (config admins); off unless said so explicitly. */
  mayIssueAdmin: z.boolean().default(false),
};

const jwtProvisioner = z.strictObject({
  ...platformFields,
  type: z.literal("jwt"),
  requiredClaims: z.record(z.string(), z.union([z.string(), z.array(z.string()).min(1)])).default({}),
  sans: sanTemplates,
  /**
   * Claim path naming the attested instance (google.compute_engine.instance_id): certificates are
   * bound to it, and a new attestation of the same instance revokes the instance's older
   * lineages (reason superseded), so a stolen identity token cannot run a second one beside it.
   */
  instanceClaim: z.string().min(1).optional(),
});

const kubernetesProvisioner = z.strictObject({
  ...platformFields,
  type: z.literal("kubernetes"),
  algorithms: algorithms.default(["RS256", "ES256"]),
  trustDomain: z.string().refine(isDnsName, "must be a DNS name, e.g. example.org"),
  namespaces: z.array(z.string().min(1)).min(1).optional(),
  sans: sanTemplates.optional(),
});

const PROVISIONER_SCHEMAS = { bootstrap: bootstrapProvisioner, jwt: jwtProvisioner, kubernetes: kubernetesProvisioner } as const;

/** Parsed by its `type`, so an error names the fields of that type rather than every variant's. */
const provisioner = z.unknown().transform((p, ctx) => {
  const type = (p as { type?: unknown } | null)?.type;
  const schema = typeof type === "string" ? PROVISIONER_SCHEMAS[type as keyof typeof PROVISIONER_SCHEMAS] : undefined;
  if (!schema) {
    ctx.addIssue({ code: "custom", path: ["type"], message: `must be one of ${Object.keys(PROVISIONER_SCHEMAS).join(", ")}` });
    return z.NEVER;
  }
  const r = schema.safeParse(p);
  if (!r.success) {
    for (const i of r.error.issues) {
      const message = i.code === "unrecognized_keys" ? `unknown key(s) ${i.keys.join(", ")}` : i.message;
      ctx.addIssue({ code: "custom", message, path: i.path });
    }
    return z.NEVER;
  }
  return r.data as z.output<(typeof PROVISIONER_SCHEMAS)[keyof typeof PROVISIONER_SCHEMAS]>;
});

/**
 * A rate limit's token bucket: `burst` requests at once, refilled at `perSecond`; `false`
 * switches the limit off. Fields left out keep the limit's own defaults.
 */
const rateLimit = (perSecond: number, burst: number) =>
  z
    .union([
      z.literal(false),
      z.strictObject({
        perSecond: z.number().positive("must be positive").default(perSecond),
        burst: z.number().int().min(1, "must be at least 1").default(burst),
      }),
    ])
    .prefault({});

export const configSchema = z
  .strictObject({
    dataDir: z.string().min(1).default("./ca-data"),
    storage,
    listen: z
      .strictObject({
        api: listenAddress.default("127.0.0.1:8443"),
        public: listenAddress.default("127.0.0.1:8080"),
        /**
         * Processes serving the public listener (OCSP, CRLs, roots, /healthz) besides the
         * primary, which keeps the API, CRL signing and pre-signing (cli/public-workers.ts).
         * 0 = the primary serves it too; the number of cores uses every core for OCSP.
         */
        publicWorkers: z.number().int().min(0, "must be at least 0").max(64, "must be at most 64").default(0),
        /**
         * Processes serving the API listener (sign, renew, revoke) instead of the primary, which
         * then keeps only the background work (CRLs, pre-signing, the serving certificate). They
         * are the same processes as the public workers where both are asked for: worker i serves
         * the public listener when i < publicWorkers and the API when i < apiWorkers.
         */
        apiWorkers: z.number().int().min(0, "must be at least 0").max(64, "must be at most 64").default(0),
        /**
         * Open connections each listener holds at most (per process), and per client address;
         * over either, a new connection is closed at once (api/connection-guard.ts). Both listeners
         * together stay well under the open-file limit (ulimit -n), checked at start.
         */
        maxConnections: z
          .strictObject({
            // A TLS connection costs ~100 KB of native memory while it handshakes (measured with
            // half-open floods): 1024 bounds that near 100 MB, and is far above what a fleet's
            // renewals need at once. Plain HTTP connections cost a tenth of that.
            api: z.number().int().min(1, "must be at least 1").max(1_000_000).default(1024),
            public: z.number().int().min(1, "must be at least 1").max(1_000_000).default(4096),
          })
          .prefault({}),
        maxConnectionsPerClient: z.number().int().min(1, "must be at least 1").max(1_000_000).default(256),
        /**
         * A plain-HTTP listener of its own for GET /metrics (Prometheus), which then leaves the
         * public listener: for when relying parties may reach the public listener but should not
         * read the CA's counters. Unset: /metrics is on the public listener.
         */
        metrics: listenAddress.optional(),
        /** A connection that has not completed its TLS handshake (API) or sent its request head (both) by then is closed. */
        handshakeTimeout: duration
          .prefault("10s")
          .refine((ms) => ms >= 1_000, "must be at least 1s")
          .refine((ms) => ms <= 30_000, "must be at most 30s (the request timeout)"),
      })
      .prefault({}),
    /** Unset: derived from listen.public (config/public-url.ts), see the transform below. */
    publicUrl: baseUrl(["http:", "https:"]).optional(),
    apiUrl: baseUrl(["https:"]).optional(),
    serverNames: z.array(z.string().min(1)).default([]),
    /**
     * Identities whose client certs may revoke any cert and read records: a SAN (DNS name, IP or
     * URI such as a SPIFFE ID) together with the provisioner the certificate came through.
     */
    admins: z.array(adminEntry).default([]),
    /** CA-wide name policy (registration/name-policy.ts); absent = whatever provisioners allow. */
    policy: z
      .strictObject({ dns: policyRules("dns"), ip: policyRules("ip"), uri: policyRules("uri") })
      .optional(),
    passphraseFile: z.string().min(1).optional(),
    ca: z
      .strictObject({
        name: z.string().min(1).max(48).regex(/^[^\x00-\x1f]+$/).default("fleetca"),
        keyType: z.enum(CA_KEY_TYPES).default("ecdsa-p256"),
        rootValidity: duration.prefault("87600h"),
        intermediateValidity: duration.prefault("8760h"),
      })
      .prefault({}),
    issuance: z
      .strictObject({
        defaultTTL: duration.prefault("24h"),
        maxTTL: duration.prefault("168h"),
        /**
         * The shortest leaf lifetime: lifetimes in config below it are refused at load, a request's
         * ttl below it is 400. A certificate that is stale (backdated a minute) or gone before a
         * host can install it is a mistake, never a policy (issue 15: `defaultTTL: 1s` was accepted).
         */
        minTTL: duration.prefault("60s").refine((ms) => ms >= 1_000, "must be at least 1s"),
      })
      .prefault({}),
    tokens: z
      .strictObject({
        /** Clock skew tolerated on exp/nbf/iat. */
        leeway: duration.prefault("60s"),
      })
      .prefault({}),
    crl: z
      .strictObject({
        /** Re-sign each issuer's CRL at least this often (and shortly after every revocation). */
        interval: duration
          .prefault("1h")
          .refine((ms) => ms >= 60_000, "must be at least 1m (the daemon checks CRL freshness once a minute)"),
        /** nextUpdate = thisUpdate + validity (RFC 5280 §5.1.2.5). */
        validity: duration.prefault("24h"),
        /**
         * CRL partitions for new certificates (revocation/crl/crl-shard.ts): each names
         * /crl/<kid>/<n> in its CRL distribution point. 1 = none (the issuer's full CRL).
         */
        shards: z.number().int().min(1, "must be at least 1").max(1024, "must be at most 1024").prefault(1),
        /** The root CRL's nextUpdate = thisUpdate + this; signed by `fleetca crl sign-root`. */
        rootValidity: duration.prefault("30d").refine((ms) => ms >= 24 * 3_600_000, "must be at least 24h"),
        /**
         * Octets: public workers (listen.publicWorkers) serve a CRL larger than this from the
         * database, a stored chunk at a time per request, instead of each holding it in memory
         * (revocation/crl/crl-mirror.ts). A million entries is ~40 MB per worker otherwise.
         */
        streamAbove: z.number().int().min(0, "must be at least 0").prefault(1024 * 1024),
      })
      .prefault({}),
    ocsp: z
      .strictObject({
        /**
         * nextUpdate = thisUpdate + validity (RFC 6960 §4.2.2.1); responses are re-signed after half
         * of it. Bounded above by the CA/B BRs §4.9.10 limit of 10 days.
         */
        validity: duration
          .prefault("4h")
          .refine((ms) => ms >= 10 * 60_000, "must be at least 10m (responses are refreshed by a once-a-minute sweep)")
          .refine((ms) => ms <= 240 * 3_600_000, "must be at most 240h (10 days)"),
        /**
         * Bounds the fresh signatures the public listener can cause (nonce requests, several
         * CertIDs, answers not pre-signed): per client address, and for all clients together.
         * Over it, a nonce request gets the pre-signed answer without the nonce (RFC 6960 §4.4.1).
         */
        rateLimit: z
          .strictObject({
            perSecond: z.number().positive().default(50),
            burst: z.number().int().min(1).default(100),
            totalPerSecond: z.number().positive().default(2000),
          })
          .prefault({}),
      })
      .prefault({}),
    /**
     * SPEC `429 rate_limited` (registration/rate-limits.ts): token buckets kept in the database,
     * so they hold across restarts and are shared by every process (approximately: within about
     * a second, see registration/token-buckets.ts). README "Configuration reference" says why
     * each default is what it is.
     */
    rateLimits: z
      .strictObject({
        issuancePerProvisioner: rateLimit(200, 20_000),
        issuancePerSubject: rateLimit(5, 500),
        renewalsPerLineage: rateLimit(0.2, 30),
        failedTokensPerAddress: rateLimit(1, 60),
      })
      .prefault({}),
    audit: z
      .strictObject({
        /**
         * The issuance log gets a signed tree head this often when it grew (and at start and
         * shutdown): the longest an entry stays unsigned, and what a monitor can lag behind.
         */
        treeHeadInterval: duration.prefault("1m").refine((ms) => ms >= 1000, "must be at least 1s"),
      })
      .prefault({}),
    provisioners: z.array(provisioner).prefault([{ name: "bootstrap", type: "bootstrap" }]),
    log: z
      .strictObject({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
        format: z.enum(["logfmt", "json"]).default("logfmt"),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    for (const key of ["defaultTTL", "maxTTL"] as const) {
      if (c.issuance[key] < c.issuance.minTTL) {
        ctx.addIssue({ code: "custom", path: ["issuance", key], message: "must be at least issuance.minTTL (default 60s)" });
      }
    }
    if (c.issuance.defaultTTL > c.issuance.maxTTL) {
      ctx.addIssue({ code: "custom", path: ["issuance", "defaultTTL"], message: "must not exceed issuance.maxTTL" });
    }
    if (c.issuance.maxTTL >= c.ca.intermediateValidity) {
      ctx.addIssue({ code: "custom", path: ["issuance", "maxTTL"], message: "must be shorter than ca.intermediateValidity" });
    }
    // Boulder crl/updater: a CRL must be replaced before its nextUpdate, with room to spare.
    if (c.crl.validity <= c.crl.interval) {
      ctx.addIssue({ code: "custom", path: ["crl", "validity"], message: "must be longer than crl.interval" });
    }
    if (c.ca.intermediateValidity > c.ca.rootValidity) {
      ctx.addIssue({ code: "custom", path: ["ca", "intermediateValidity"], message: "must not exceed ca.rootValidity" });
    }
    c.provisioners.forEach((p, i) => {
      const maxTtl = p.maxTTL ?? c.issuance.maxTTL;
      if (p.maxTTL !== undefined && p.maxTTL > c.issuance.maxTTL) {
        ctx.addIssue({ code: "custom", path: ["provisioners", i, "maxTTL"], message: "must not exceed issuance.maxTTL" });
      }
      if (p.defaultTTL !== undefined && p.defaultTTL > maxTtl) {
        ctx.addIssue({ code: "custom", path: ["provisioners", i, "defaultTTL"], message: "must not exceed the provisioner's maxTTL (or issuance.maxTTL)" });
      }
      if (p.defaultTTL === undefined && p.maxTTL !== undefined && c.issuance.defaultTTL > p.maxTTL) {
        ctx.addIssue({ code: "custom", path: ["provisioners", i, "defaultTTL"], message: "is needed: issuance.defaultTTL exceeds this provisioner's maxTTL" });
      }
      if (p.type === "bootstrap") return;
      const problem = checkTemplates(p.sans ?? DEFAULT_K8S_SANS, p.type === "kubernetes" ? { trustDomain: p.trustDomain } : {});
      if (problem) ctx.addIssue({ code: "custom", path: ["provisioners", i, "sans"], message: problem });
      if (p.type === "jwt" && p.sans.dns.length + p.sans.uri.length === 0) {
        ctx.addIssue({ code: "custom", path: ["provisioners", i, "sans"], message: "a jwt provisioner needs at least one SAN template" });
      }
    });
    const names = c.provisioners.map((p) => p.name);
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) ctx.addIssue({ code: "custom", path: ["provisioners", i, "name"], message: `duplicate provisioner "${n}"` });
    });
    checkAdmins(c, ctx);
  })
  .transform((c) => ({
    ...c,
    publicUrl: c.publicUrl ?? publicUrlFromListen(c.listen.public),
    /** Where publicUrl came from: with "listen.public" and port 0 the daemon fills in the bound port. */
    publicUrlSource: (c.publicUrl !== undefined ? "publicUrl" : "listen.public") as "publicUrl" | "listen.public",
  }));

/**
 * Admins are identities: each entry must name a configured provisioner that may issue admin
 * SANs, and no provisioner without `mayIssueAdmin: true` may have a SAN template that could render
 * an admin SAN (a jwt `spiffe://example.org/{sub}` with sub = "admin"), whichever provisioner
 * the entry names: such a config is refused at start instead of holding back tokens one by one.
 */
function checkAdmins(c: { admins: AdminIdentity[]; provisioners: ProvisionerConfig[] }, ctx: z.RefinementCtx): void {
  c.admins.forEach((a, i) => {
    const p = c.provisioners.find((q) => q.name === a.provisioner);
    if (!p) {
      ctx.addIssue({ code: "custom", path: ["admins", i], message: `names provisioner "${a.provisioner}", which is not configured (a plain SAN means "${DEFAULT_ADMIN_PROVISIONER}"; write { provisioner: NAME, san: ${a.san} })` });
    } else if (!p.mayIssueAdmin) {
      ctx.addIssue({ code: "custom", path: ["admins", i], message: `provisioner "${p.name}" may not issue admin SANs: set mayIssueAdmin: true on it` });
    }
  });
  c.provisioners.forEach((p, i) => {
    if (p.type === "bootstrap" || p.mayIssueAdmin) return;
    const templates = p.sans ?? DEFAULT_K8S_SANS;
    const opts =
      p.type === "kubernetes"
        ? { literals: { trustDomain: p.trustDomain }, aliases: K8S_CLAIMS, ...(p.namespaces && { fixed: { [K8S_CLAIMS.namespace]: p.namespaces } }) }
        : { fixed: Object.fromEntries(Object.entries(p.requiredClaims).map(([k, v]) => [k, Array.isArray(v) ? v : [v]])) };
    for (const a of c.admins) {
      for (const kind of ["dns", "uri"] as const) {
        const tpl = templates[kind].find((t) => templateCanRender(kind, t, a.san, opts));
        if (tpl !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["provisioners", i, "sans"],
            message: `provisioner "${p.name}" could issue the admin SAN ${a.san} (template "${tpl}"): set mayIssueAdmin: true on it, or narrow the template`,
          });
          return;
        }
      }
    }
  });
}

export type FleetcaConfig = z.output<typeof configSchema>;
export type BootstrapProvisionerConfig = z.output<typeof bootstrapProvisioner>;
export type JwtProvisionerConfig = z.output<typeof jwtProvisioner>;
export type KubernetesProvisionerConfig = z.output<typeof kubernetesProvisioner>;
export type ProvisionerConfig = z.output<typeof provisioner>;
