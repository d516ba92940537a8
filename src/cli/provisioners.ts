import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { BootstrapProvisionerConfig, FleetcaConfig, ProvisionerConfig } from "../config/schema.js";
import { AdminSans, type AdminIssuance } from "../attestation/admin-sans.js";
import { BootstrapProvisioner, ensureBootstrapKey, type BootstrapSettings } from "../attestation/bootstrap.js";
import { JwksSource } from "../attestation/jwks.js";
import { JwtProvisioner } from "../attestation/jwt.js";
import { DEFAULT_K8S_SANS, KubernetesProvisioner } from "../attestation/kubernetes.js";
import type { PlatformAlgorithm } from "../attestation/platform-token.js";
import type { Provisioner } from "../attestation/provisioner.js";
import type { CaKeyStore } from "../signing/ca-key-store.js";
import type { ProvisionerKeyStore } from "../storage/ports.js";

/** Builds the configured provisioners; bootstrap ones get their key created on first use. */
export async function buildProvisioners(
  config: FleetcaConfig,
  deps: { keys: CaKeyStore; store: ProvisionerKeyStore; clock: Clock; log: Logger },
): Promise<Provisioner[]> {
  const out: Provisioner[] = [];
  for (const p of config.provisioners) {
    if (p.type === "bootstrap") {
      const record = await ensureBootstrapKey(p.name, deps.keys, deps.store, deps.clock);
      out.push(await BootstrapProvisioner.fromRecord(bootstrapSettingsFor(config, p), record));
      continue;
    }
    const jwks = new JwksSource(
      { file: p.jwks.file, url: p.jwks.url, maxAgeMs: p.jwks.maxAge, refetchCooldownMs: p.jwks.refetchCooldown },
      deps.clock,
      deps.log.child({ provisioner: p.name }),
    );
    void jwks.warm();
    const rules = {
      provisioner: p.name,
      issuer: p.issuer,
      audiences: p.audience,
      algorithms: p.algorithms as PlatformAlgorithm[],
      leewayMs: p.leeway ?? config.tokens.leeway,
      maxTokenAgeMs: p.maxTokenAge,
      jti: p.jti,
      admin: adminIssuanceFor(config, p),
    };
    if (p.type === "jwt") {
      out.push(new JwtProvisioner({ ...rules, requiredClaims: p.requiredClaims, sans: p.sans, instanceClaim: p.instanceClaim }, jwks));
    } else {
      out.push(new KubernetesProvisioner({ ...rules, trustDomain: p.trustDomain, namespaces: p.namespaces, sans: p.sans ?? DEFAULT_K8S_SANS }, jwks));
    }
  }
  return out;
}

/** What the daemon and `fleetca token create` both apply to a bootstrap provisioner's tokens. */
export function bootstrapSettingsFor(config: FleetcaConfig, p: BootstrapProvisionerConfig): BootstrapSettings {
  return { name: p.name, maxTokenTtlMs: p.maxTokenTTL, leewayMs: config.tokens.leeway, admin: adminIssuanceFor(config, p) };
}

/** Config `admins` (the SANs every provisioner must hold back) and this provisioner's mayIssueAdmin. */
function adminIssuanceFor(config: FleetcaConfig, p: ProvisionerConfig): AdminIssuance {
  return { sans: new AdminSans(config.admins), mayIssue: p.mayIssueAdmin };
}
