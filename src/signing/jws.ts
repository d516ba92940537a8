import { SIGNATURE_SCHEMES } from "../core/key-type.js";
import type { Signer } from "./signer.js";

const b64url = (b: Uint8Array | string) => Buffer.from(b).toString("base64url");

/**
 * Compact JWS (RFC 7515 §7.1) signed by a Signer, so provisioner keys stay behind the same
 * boundary as CA keys. JWS wants ECDSA signatures as raw r||s (RFC 7518 §3.4), not DER.
 */
export async function signCompactJws(signer: Signer, header: Record<string, unknown>, payload: object): Promise<string> {
  const alg = SIGNATURE_SCHEMES[signer.keyType].jwsAlg;
  const input = `${b64url(JSON.stringify({ ...header, alg }))}.${b64url(JSON.stringify(payload))}`;
  const der = await signer.sign(Buffer.from(input, "ascii"));
  const sig = alg === "ES256" ? ecdsaDerToRaw(der, 32) : alg === "ES384" ? ecdsaDerToRaw(der, 48) : der;
  return `${input}.${b64url(sig)}`;
}

/** Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279 §2.2.3) to fixed-width r||s. */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array {
  let i = 2;
  if (der[1]! & 0x80) i = 2 + (der[1]! & 0x7f);
  const out = new Uint8Array(size * 2);
  for (let n = 0; n < 2; n++) {
    if (der[i] !== 0x02) throw new Error("malformed ECDSA signature");
    const len = der[i + 1]!;
    let v = der.subarray(i + 2, i + 2 + len);
    while (v.length > size && v[0] === 0) v = v.subarray(1);
    out.set(v, n * size + (size - v.length));
    i += 2 + len;
  }
  return out;
}
