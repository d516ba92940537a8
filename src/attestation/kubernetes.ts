import type { JWTPayload } from "jose";
import { CaError } from "../core/errors.js";
import type { Sans } from "../core/sans.js";
import { claimAt, claimText } from "./claims.js";
import { PlatformProvisioner, type PlatformTokenRules } from "./platform-token.js";
import { renderSans, type SanTemplates } from "./san-template.js";

/** Where a projected service-account token (Kubernetes ≥ 1.21 bound tokens) carries its identity. */
export const K8S_CLAIMS = {
  namespace: "kubernetes.io.namespace",
  serviceaccount: "kubernetes.io.serviceaccount.name",
} as const;

export const DEFAULT_K8S_SANS: SanTemplates = { dns: [], uri: ["spiffe://{trustDomain}/ns/{namespace}/sa/{serviceaccount}"] };

export interface KubernetesProvisionerSettings extends PlatformTokenRules {
  trustDomain: string;
  /** When set, only these namespaces may obtain certificates. */
  namespaces?: string[] | undefined;
  sans: SanTemplates;
}

/**
 * Kubernetes projected service-account tokens, verified with the cluster's OIDC issuer keys and
 * bound to our audience. The SANs come from namespace and service account, SPIFFE-style by default.
 */
export class KubernetesProvisioner extends PlatformProvisioner<KubernetesProvisionerSettings> {
  readonly type = "kubernetes" as const;

  protected sansFor(payload: JWTPayload): Sans {
    const namespace = claimText(claimAt(payload, K8S_CLAIMS.namespace));
    const serviceAccount = claimText(claimAt(payload, K8S_CLAIMS.serviceaccount));
    // Legacy (secret-based) service-account tokens lack these claims: only projected tokens qualify.
    if (namespace === undefined || serviceAccount === undefined) {
      throw CaError.unauthorized("missing_claim", "kubernetes.io namespace/serviceaccount (not a projected token)");
    }
    if (this.settings.namespaces && !this.settings.namespaces.includes(namespace)) {
      throw new CaError("forbidden", `namespace "${namespace}" is not allowed by provisioner ${this.name}`);
    }
    return renderSans(this.settings.sans, payload, { literals: { trustDomain: this.settings.trustDomain }, aliases: K8S_CLAIMS });
  }
}
