/** Key algorithms fleetca can hold as a CA key (SPEC.md "Defaults"). */
export const CA_KEY_TYPES = ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072", "rsa-4096"] as const;
export type CaKeyType = (typeof CA_KEY_TYPES)[number];

/** Subject key algorithms a leaf may carry: the allowlist, RSA measured in bits. */
export type SubjectKeyAlgorithm =
  | { kind: "ec"; curve: "P-256" | "P-384" }
  | { kind: "ed25519" }
  | { kind: "rsa"; bits: number };

export function describeSubjectKey(k: SubjectKeyAlgorithm): string {
  switch (k.kind) {
    case "ec":
      return `ECDSA ${k.curve}`;
    case "ed25519":
      return "Ed25519";
    case "rsa":
      return `RSA-${k.bits}`;
  }
}

/**
 * How each CA key type signs: the digest, the X.509 signature AlgorithmIdentifier (RFC 5758 §3.2
 * for ECDSA, RFC 8410 §3 for Ed25519, RFC 4055 §5 for RSA) and the JWS "alg" (RFC 7518 §3.1, RFC 8037).
 */
export interface SignatureScheme {
  hash: "sha256" | "sha384" | null;
  oid: string;
  /** RSA AlgorithmIdentifiers carry an explicit NULL parameter; ECDSA and Ed25519 omit it. */
  nullParams: boolean;
  jwsAlg: "ES256" | "ES384" | "EdDSA" | "RS256";
}

export const SIGNATURE_SCHEMES: Record<CaKeyType, SignatureScheme> = {
  "ecdsa-p256": { hash: "sha256", oid: "1.2.840.10045.4.3.2", nullParams: false, jwsAlg: "ES256" },
  "ecdsa-p384": { hash: "sha384", oid: "1.2.840.10045.4.3.3", nullParams: false, jwsAlg: "ES384" },
  ed25519: { hash: null, oid: "1.3.101.112", nullParams: false, jwsAlg: "EdDSA" },
  "rsa-3072": { hash: "sha256", oid: "1.2.840.113549.1.1.11", nullParams: true, jwsAlg: "RS256" },
  "rsa-4096": { hash: "sha256", oid: "1.2.840.113549.1.1.11", nullParams: true, jwsAlg: "RS256" },
};
