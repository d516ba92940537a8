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
  /**
   * The same signature, made on the calling thread. Only for one small input on a request path
   * in a process that has a core to itself (a public worker): sign() hands the work to libuv's
   * thread pool, and for a ~30 µs P-256 signature the hand-off costs another 12–20 µs of CPU
   * (measured: 37 µs/signature on the thread, 50–57 µs through the pool). Optional: a signer
   * that cannot sign synchronously (an HSM over PKCS#11) leaves it out and callers use sign().
   */
  signOnThisThread?(data: Uint8Array): Uint8Array;
}
