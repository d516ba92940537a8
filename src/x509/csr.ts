import { createPublicKey, verify as cryptoVerify, constants, type JsonWebKey, type KeyObject } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { CaError } from "../core/errors.js";
import type { SubjectKeyAlgorithm } from "../core/key-type.js";
import { classifySan, emptySans, type SanKind, type Sans } from "../core/sans.js";
import type { CsrFields } from "./csr-fields.js";
import { csrFieldsByObjectModel } from "./csr-object-model.js";
import { walkCsr } from "./csr-walk.js";
import { derOuterLength } from "./der.js";
import { DerReader, TAG } from "./der-reader.js";
import { fromSinglePem } from "./pem.js";

/** A PKCS#10 request whose self-signature verified (proof of possession, RFC 2986 §3). */
export interface VerifiedCsr {
  spki: Uint8Array;
  subjectKey: SubjectKeyAlgorithm;
  /** SANs from the extensionRequest attribute plus the subject CN (if it is a DNS name or IP). */
  requested: Sans;
  commonName: string | null;
}

/**
 * CSR signature algorithms accepted (RFC 5758 §3.2, RFC 4055 §5, RFC 8410 §3). SHA-1 and MD5
 * are refused outright; RSA-PSS requests are not supported yet.
 */
const CSR_SIGNATURES: Record<string, { hash: string | null; key: SubjectKeyAlgorithm["kind"] }> = {
  "1.2.840.10045.4.3.2": { hash: "sha256", key: "ec" },
  "1.2.840.10045.4.3.3": { hash: "sha384", key: "ec" },
  "1.2.840.10045.4.3.4": { hash: "sha512", key: "ec" },
  "1.2.840.113549.1.1.11": { hash: "sha256", key: "rsa" },
  "1.2.840.113549.1.1.12": { hash: "sha384", key: "rsa" },
  "1.2.840.113549.1.1.13": { hash: "sha512", key: "rsa" },
  "1.3.101.112": { hash: null, key: "ed25519" },
};

const MAX_RSA_BITS = 8192;

/**
 * The DER of a `csr` field (POST /v1/sign, a renewal's rekey): exactly one PEM block, nothing
 * but whitespace around it (issue 15: a second block or a leading NUL was accepted, the first
 * block used), so what is signed is the only thing the client could have meant.
 */
export function decodeCsrPem(pem: string): Uint8Array {
  const der = fromSinglePem(pem, ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]);
  if (!der) throw new CaError("bad_csr", "csr is not exactly one PEM \"CERTIFICATE REQUEST\" block (nothing but whitespace may surround it)");
  return der;
}

/**
 * Parses and verifies a DER PKCS#10 request; every failure is a bad_csr with a clear reason.
 * The DER walk reads ordinary requests; whatever it leaves alone is decoded by the object model,
 * and both go through the same checks, so the outcome does not depend on which one read it.
 */
export function verifyCsr(der: Uint8Array): VerifiedCsr {
  const check = checkCsr(walkCsr(checkedLength(der)) ?? csrFieldsByObjectModel(der));
  return check.finish(cryptoVerify(...check.signature));
}

/**
 * The same verification with the signature checked on libuv's thread pool (node:crypto's
 * callback form), so the proof of possession — the largest part of it — leaves the event loop:
 * what the issuance path uses. test/csr-walk.test.ts holds it to verifyCsr's outcomes.
 */
export async function verifyCsrOffThread(der: Uint8Array): Promise<VerifiedCsr> {
  const check = checkCsr(walkCsr(checkedLength(der)) ?? csrFieldsByObjectModel(der));
  const ok = await new Promise<boolean>((resolve, reject) =>
    cryptoVerify(...check.signature, (err, result) => (err ? reject(err) : resolve(result))),
  );
  return check.finish(ok);
}

/** The same verification with the object model alone: the reference the walk is tested against. */
export function verifyCsrByObjectModel(der: Uint8Array): VerifiedCsr {
  const check = checkCsr(csrFieldsByObjectModel(checkedLength(der)));
  return check.finish(cryptoVerify(...check.signature));
}

function checkedLength(der: Uint8Array): Uint8Array {
  if (derOuterLength(der) !== der.length) throw new CaError("bad_csr", "csr is truncated or has trailing data");
  return der;
}

type VerifyArgs = [algorithm: string | null, data: Uint8Array, key: VerifyKeyInput, signature: Uint8Array];
type VerifyKeyInput = { key: KeyObject; padding: number } | { key: KeyObject; dsaEncoding: "der" };

/**
 * Key allowlist, signature algorithm, proof of possession (RFC 2986 §3: the self-signature over
 * the exact certificationRequestInfo octets), then the requested names, in that order: the
 * caller runs the signature check (`signature`, the arguments of crypto.verify) between the two
 * halves and hands its result to `finish`.
 */
function checkCsr(fields: CsrFields): { signature: VerifyArgs; finish(signatureOk: boolean): VerifiedCsr } {
  const { spki } = fields;
  const { key, subjectKey } = subjectKeyOf(spki);

  const scheme = CSR_SIGNATURES[fields.signatureAlgorithm];
  if (!scheme) throw new CaError("bad_csr", `csr signature algorithm ${fields.signatureAlgorithm} is not allowed`);
  if (scheme.key !== subjectKey.kind) throw new CaError("bad_csr", "csr signature algorithm does not match its key");
  const keyInput: VerifyKeyInput = subjectKey.kind === "rsa" ? { key, padding: constants.RSA_PKCS1_PADDING } : { key, dsaEncoding: "der" };
  return {
    signature: [scheme.hash, fields.info, keyInput, fields.signature],
    finish: (signatureOk) => {
      if (!signatureOk) throw new CaError("bad_csr", "csr signature does not verify");
      return { spki, subjectKey, ...requestedNames(fields) };
    },
  };
}

function requestedNames(fields: CsrFields): { requested: Sans; commonName: string | null } {
  const requested = emptySans();
  // Each SAN keeps the type the CSR gave it: a URI "web-1.internal" must not become a DNS SAN,
  // nor a DNS "10.0.0.1" an IP SAN. Only the subject CN (untyped text) is classified.
  const add = (kind: SanKind, raw: string) => {
    let c: ReturnType<typeof classifySan>;
    try {
      c = classifySan(raw);
    } catch (e) {
      throw new CaError("bad_csr", (e as Error).message);
    }
    if (c.kind !== kind) throw new CaError("bad_csr", `csr ${kind.toUpperCase()} SAN "${raw.slice(0, 80)}" is not a valid ${kind.toUpperCase()} name`);
    if (!requested[c.kind].includes(c.value)) requested[c.kind].push(c.value);
  };
  for (const { sans, other } of fields.sanGroups) {
    if (other > 0) throw new CaError("bad_csr", "csr asks for a SAN type other than DNS, IP or URI");
    sans.dns.forEach((v) => add("dns", v));
    sans.ip.forEach((v) => add("ip", v));
    sans.uri.forEach((v) => add("uri", v));
  }
  const { commonName } = fields;
  if (commonName !== null && commonName !== "") {
    let c: ReturnType<typeof classifySan>;
    try {
      c = classifySan(commonName);
    } catch {
      throw new CaError("bad_csr", `csr subject CN "${commonName.slice(0, 80)}" is not a DNS name or IP address`);
    }
    if (c.kind === "uri") throw new CaError("bad_csr", "csr subject CN must be a DNS name or IP address");
    add(c.kind, commonName);
  }
  return { requested, commonName };
}

/** Classifies a subject public key and refuses anything outside the allowlist. */
export function subjectKeyOf(spki: Uint8Array): { key: KeyObject; subjectKey: SubjectKeyAlgorithm } {
  const fast = importCommonKey(spki);
  if (fast) return fast;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch {
    throw new CaError("bad_csr", "csr public key is malformed or of an unknown type");
  }
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "ec":
      // RFC 5480 §2.1.1: certificates MUST use namedCurve; node reports explicit parameters
      // that happen to describe P-256 as prime256v1, so look at the encoding itself.
      if (!ecParametersAreNamedCurve(spki)) throw new CaError("bad_csr", "EC key must name its curve (explicit curve parameters are not allowed)");
      if (d.namedCurve === "prime256v1") return { key, subjectKey: { kind: "ec", curve: "P-256" } };
      if (d.namedCurve === "secp384r1") return { key, subjectKey: { kind: "ec", curve: "P-384" } };
      throw new CaError("bad_csr", `EC curve ${d.namedCurve ?? "unknown"} is not allowed (P-256, P-384)`);
    case "ed25519":
      return { key, subjectKey: { kind: "ed25519" } };
    case "rsa": {
      const bits = d.modulusLength ?? 0;
      if (bits < 2048) throw new CaError("bad_csr", `RSA-${bits} is too weak (minimum 2048 bits)`);
      if (bits > MAX_RSA_BITS) throw new CaError("bad_csr", `RSA-${bits} is larger than ${MAX_RSA_BITS} bits`);
      // A small public exponent invites attacks on PKCS#1 v1.5; the CA/B BRs §6.1.6 floor is 65537.
      if ((d.publicExponent ?? 0n) < 65537n || (d.publicExponent ?? 0n) % 2n === 0n) {
        throw new CaError("bad_csr", "RSA public exponent must be odd and at least 65537");
      }
      return { key, subjectKey: { kind: "rsa", bits } };
    }
    default:
      throw new CaError("bad_csr", `key type ${key.asymmetricKeyType ?? "unknown"} is not allowed`);
  }
}

/** DER SPKI prefixes of the two keys nearly every request carries (RFC 5480 §2, RFC 8410 §4). */
const P256_UNCOMPRESSED_PREFIX = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex");
const ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/**
 * P-256 (uncompressed point, named curve) and Ed25519 keys imported as JWK: OpenSSL 3's DER
 * decoder costs ~135 µs (P-256) and ~100 µs (Ed25519) a key on this machine, the JWK path ~65 and
 * ~16 µs, and it checks the same thing (the point is on the curve; a bad key is refused). The
 * prefix match is exact, so only the canonical DER of these two reaches it; everything else
 * takes the decoder. P-384 is left to the decoder: its JWK import is slower. Refusals read as the
 * decoder's do. test/csr-walk.test.ts compares both imports.
 */
function importCommonKey(spki: Uint8Array): { key: KeyObject; subjectKey: SubjectKeyAlgorithm } | null {
  const b64 = (from: number, to: number) => Buffer.from(spki.buffer, spki.byteOffset + from, to - from).toString("base64url");
  let jwk: JsonWebKey;
  let subjectKey: SubjectKeyAlgorithm;
  if (spki.length === 91 && P256_UNCOMPRESSED_PREFIX.equals(spki.subarray(0, P256_UNCOMPRESSED_PREFIX.length))) {
    jwk = { kty: "EC", crv: "P-256", x: b64(27, 59), y: b64(59, 91) };
    subjectKey = { kind: "ec", curve: "P-256" };
  } else if (spki.length === 44 && ED25519_PREFIX.equals(spki.subarray(0, ED25519_PREFIX.length))) {
    jwk = { kty: "OKP", crv: "Ed25519", x: b64(12, 44) };
    subjectKey = { kind: "ed25519" };
  } else {
    return null;
  }
  try {
    return { key: createPublicKey({ key: jwk, format: "jwk" }), subjectKey };
  } catch {
    throw new CaError("bad_csr", "csr public key is malformed or of an unknown type");
  }
}

/**
 * True when an EC SubjectPublicKeyInfo's algorithm parameters are an OBJECT IDENTIFIER
 * (namedCurve, RFC 5480 §2.1.1): SEQUENCE { SEQUENCE { algorithm OID, parameters }, BIT STRING }.
 * Read with the DER reader; an encoding it refuses (OpenSSL accepted the key, so BER at most) is
 * left to the object model, as before.
 */
function ecParametersAreNamedCurve(spki: Uint8Array): boolean {
  try {
    const top = new DerReader(spki);
    const info = top.inside(top.expect(TAG.SEQUENCE, "SubjectPublicKeyInfo"));
    const alg = info.inside(info.expect(TAG.SEQUENCE, "algorithm"));
    alg.expect(TAG.OID, "algorithm");
    const named = alg.peekTag() === TAG.OID;
    info.expect(TAG.BIT_STRING, "subjectPublicKey");
    info.finish("SubjectPublicKeyInfo");
    top.finish("SPKI");
    return named;
  } catch {
    return ecParametersAreNamedCurveByObjectModel(spki);
  }
}

function ecParametersAreNamedCurveByObjectModel(spki: Uint8Array): boolean {
  try {
    const info = AsnConvert.parse(spki, SubjectPublicKeyInfo);
    const params = info.algorithm.parameters;
    return params instanceof ArrayBuffer && new Uint8Array(params)[0] === 0x06;
  } catch {
    return false;
  }
}
