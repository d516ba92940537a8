import { CaError } from "../core/errors.js";
import { sanCount, sansSubset, sansToList, type Sans } from "../core/sans.js";
import type { SanPolicy } from "../attestation/provisioner.js";

/**
 * Decides the SANs to issue: exactly what the CSR asked for, every one authorised by the policy;
 * a CSR that asks for nothing gets everything the token allows.
 */
export function decideSans(requested: Sans, policy: SanPolicy): Sans {
  switch (policy.kind) {
    case "listed":
    case "templated": {
      if (sanCount(requested) === 0) return policy.sans;
      if (!sansSubset(requested, policy.sans)) {
        const extra = sansToList(requested).filter((s) => !sansToList(policy.sans).includes(s));
        throw new CaError("forbidden", `not authorised for ${extra.slice(0, 5).join(", ")}`);
      }
      return requested;
    }
  }
}
