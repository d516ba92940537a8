import type { Signer } from "../signing/signer.js";
import type { CountedSeries, SignaturePurpose } from "./ca-metrics.js";

/**
 * A Signer that counts each signature it makes, by purpose, at the KMS boundary every signature
 * goes through (signing/signer.ts): one wrapper per key, whoever holds the Issuer, in the
 * primary and in every worker. The purpose is read from what is signed, which is always a DER
 * "to be signed" structure whose first field tells them apart without parsing the rest:
 *
 *   TBSCertificate (RFC 5280 §4.1)  SEQUENCE { [0] EXPLICIT version v3 (2), ... }
 *   TBSCertList    (RFC 5280 §5.1)  SEQUENCE { version v2 INTEGER 1, ... }
 *   ResponseData   (RFC 6960 §4.2.1) SEQUENCE { responderID [1] or [2], ... } (version v1 is
 *                                   DEFAULT, so DER leaves it out)
 *
 * Anything else (the key-matches-certificate probe at start-up and /healthz's) is "probe".
 */
export function countSignatures(signer: Signer, series: Record<SignaturePurpose, CountedSeries>): Signer {
  const counted: Signer = {
    keyType: signer.keyType,
    publicKeySpki: signer.publicKeySpki,
    sign: async (data) => {
      const signature = await signer.sign(data);
      series[purposeOf(data)].inc();
      return signature;
    },
  };
  const onThisThread = signer.signOnThisThread?.bind(signer);
  if (onThisThread) {
    counted.signOnThisThread = (data) => {
      const signature = onThisThread(data);
      series[purposeOf(data)].inc();
      return signature;
    };
  }
  return counted;
}

/** What a to-be-signed DER is, from the tag (and for [0], the version) of its first field. */
export function purposeOf(tbs: Uint8Array): SignaturePurpose {
  if (tbs.length < 4 || tbs[0] !== 0x30) return "probe";
  const lengthByte = tbs[1]!;
  // Short form: the length is this byte; long form 0x8N: N length octets follow.
  const first = lengthByte < 0x80 ? 2 : 2 + (lengthByte & 0x7f);
  const tag = tbs[first];
  if (tag === 0xa1 || tag === 0xa2) return "ocsp";
  // INTEGER 1 (v2): a CRL's version.
  if (tag === 0x02 && tbs[first + 1] === 0x01 && tbs[first + 2] === 0x01) return "crl";
  // [0] { INTEGER 2 } (v3): a certificate's version.
  if (tag === 0xa0 && tbs[first + 1] === 0x03 && tbs[first + 2] === 0x02 && tbs[first + 3] === 0x01 && tbs[first + 4] === 0x02) return "certificate";
  return "probe";
}
