import { z } from "zod";
import { CA_KEY_TYPES } from "../core/key-type.js";
import { parseDuration } from "../core/duration.js";

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

const provisionerName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lower-case letters, digits and dashes");

const bootstrapProvisioner = z.strictObject({
  name: provisionerName,
  type: z.literal("bootstrap"),
  /** Longest lifetime `fleetca token create --ttl` may give a token. */
  maxTokenTTL: duration.prefault("1h"),
});

export const configSchema = z
  .strictObject({
    dataDir: z.string().min(1).default("./ca-data"),
    listen: z
      .strictObject({ api: listenAddress.default("127.0.0.1:8443"), public: listenAddress.default("127.0.0.1:8080") })
      .prefault({}),
    publicUrl: baseUrl(["http:", "https:"]).default("http://127.0.0.1:8080"),
    apiUrl: baseUrl(["https:"]).optional(),
    serverNames: z.array(z.string().min(1)).default([]),
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
      .strictObject({ defaultTTL: duration.prefault("24h"), maxTTL: duration.prefault("168h") })
      .prefault({}),
    tokens: z
      .strictObject({
        /** Clock skew tolerated on exp/nbf/iat. */
        leeway: duration.prefault("60s"),
      })
      .prefault({}),
    provisioners: z
      .array(
        z.unknown().transform((p, ctx) => {
          const type = (p as { type?: unknown } | null)?.type;
          if (type === "jwt" || type === "kubernetes") {
            ctx.addIssue({ code: "custom", message: `provisioner type "${type}" is not supported by this fleetca version yet` });
            return z.NEVER;
          }
          const r = bootstrapProvisioner.safeParse(p);
          if (!r.success) {
            for (const i of r.error.issues) ctx.addIssue({ code: "custom", message: i.message, path: i.path });
            return z.NEVER;
          }
          return r.data;
        }),
      )
      .prefault([{ name: "bootstrap", type: "bootstrap" }]),
    log: z
      .strictObject({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
        format: z.enum(["logfmt", "json"]).default("logfmt"),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    if (c.issuance.defaultTTL > c.issuance.maxTTL) {
      ctx.addIssue({ code: "custom", path: ["issuance", "defaultTTL"], message: "must not exceed issuance.maxTTL" });
    }
    if (c.issuance.maxTTL >= c.ca.intermediateValidity) {
      ctx.addIssue({ code: "custom", path: ["issuance", "maxTTL"], message: "must be shorter than ca.intermediateValidity" });
    }
    if (c.ca.intermediateValidity > c.ca.rootValidity) {
      ctx.addIssue({ code: "custom", path: ["ca", "intermediateValidity"], message: "must not exceed ca.rootValidity" });
    }
    const names = c.provisioners.map((p) => p.name);
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) ctx.addIssue({ code: "custom", path: ["provisioners", i, "name"], message: `duplicate provisioner "${n}"` });
    });
  });

export type FleetcaConfig = z.output<typeof configSchema>;
export type BootstrapProvisionerConfig = z.output<typeof bootstrapProvisioner>;
