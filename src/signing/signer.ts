import type { CaKeyType } from "../core/key-type.js";

/**
 * The KMS boundary (DESIGN habit 7): everything outside src/signing/ holds a Signer, never key
 * bytes. An HSM/PKCS#11 implementation later implements the same three members.
 */
export interface Signer {
  readonly keyType: CaKeyType;
  /** DER SubjectPublicKeyInfo of the key pair. */
  readonly publicKeySpki: Uint8Array;
  /**
   * Signs `data` with the key type's scheme (core/key-type SIGNATURE_SCHEMES) and returns the
   * signature as X.509 carries it: DER Ecdsa-Sig-Value for ECDSA (RFC 3279 §2.2.3),
   * raw 64 bytes for Ed25519, PKCS#1 v1.5 for RSA.
   */
  sign(data: Uint8Array): Promise<Uint8Array>;
}
