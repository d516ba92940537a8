import { isIP } from "node:net";
import { AsnConvert } from "@peculiar/asn1-schema";
import type { Extension } from "@peculiar/asn1-x509";
import type { SignatureScheme, SubjectKeyAlgorithm } from "../core/key-type.js";
import type { Sans } from "../core/sans.js";
import { derExtension, derHeader, derOid, derTime, derTlv } from "./der.js";
import { OID } from "./oids.js";
import {
  authorityKeyIdExtension,
  leafBasicConstraints,
  leafExtKeyUsage,
  leafKeyUsage,
  leafPublicationExtensions,
  leafSubjectCommonName,
  signatureAlgorithmId,
  type PublicationUrls,
} from "./profile.js";

/** What a leaf template needs of its issuer: the exact subject octets, the key id for the AKI, the signature scheme. */
export interface TemplateIssuer {
  subjectDer: Uint8Array;
  keyId: Uint8Array;
  scheme: SignatureScheme;
}

/** The per-certificate values spliced into the template. */
export interface LeafValues {
  serialContent: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  subjectSpki: Uint8Array;
  subjectKeyId: Uint8Array;
  subjectKey: SubjectKeyAlgorithm;
  sans: Sans;
  crlShard: number | null;
}

const VERSION_V3 = Uint8Array.of(0xa0, 0x03, 0x02, 0x01, 0x02); // [0] EXPLICIT INTEGER 2 (RFC 5280 §4.1.2.1)
const EMPTY_NAME = Uint8Array.of(0x30, 0x00);
const CN_TYPE = derOid(OID.commonName);

/**
 * The leaf TBSCertificate (RFC 5280 §4.1.2) as a per-issuer DER template: what is the same for
 * every leaf of an issuer — version, signature algorithm, issuer name, basicConstraints, keyUsage
 * (one per key family), extKeyUsage, AKI, and the CRL DP + AIA of each CRL partition — is encoded
 * once, by the same object-model builders profile.ts's `leafTbs` uses; serial, validity, subject,
 * SPKI, SKI and SAN are spliced in per certificate. Building a leaf through the object model,
 * serialising it and parsing it back to lint was ~40 % of the sign path; this is microseconds.
 *
 * The CA still lints the exact bytes (certificate-walk.ts reads every TLV back before signing),
 * and test/leaf-template.test.ts compares thousands of random leaves byte for byte with
 * `leafTbs`, so the template cannot drift from the profile unnoticed.
 */
export class LeafTemplate {
  readonly #signatureAlgorithm: Uint8Array;
  readonly #issuer: Uint8Array;
  readonly #basicConstraints: Uint8Array;
  readonly #keyUsage = new Map<SubjectKeyAlgorithm["kind"], Uint8Array>();
  readonly #extKeyUsage: Uint8Array;
  readonly #authorityKeyId: Uint8Array;
  readonly #publication = new Map<number | null, Uint8Array>();

  constructor(
    issuer: TemplateIssuer,
    private readonly urls: (crlShard: number | null) => PublicationUrls,
  ) {
    this.#signatureAlgorithm = encoded(signatureAlgorithmId(issuer.scheme));
    this.#issuer = new Uint8Array(issuer.subjectDer);
    this.#basicConstraints = encoded(leafBasicConstraints());
    this.#extKeyUsage = encoded(leafExtKeyUsage());
    this.#authorityKeyId = encoded(authorityKeyIdExtension(issuer.keyId));
  }

  /** The TBSCertificate's DER for these values. */
  encode(v: LeafValues): Uint8Array {
    const cn = leafSubjectCommonName(v.sans);
    const subject = cn === null ? EMPTY_NAME : commonNameOnly(cn);
    const extensions = concat([
      this.#basicConstraints,
      this.#keyUsageOf(v.subjectKey),
      this.#extKeyUsage,
      derExtension(OID.subjectKeyIdentifier, false, derTlv(0x04, v.subjectKeyId)),
      this.#authorityKeyId,
      // An empty subject makes the SAN the only identity: it must be critical (§4.2.1.6).
      derExtension(OID.subjectAltName, cn === null, generalNames(v.sans)),
      this.#publicationOf(v.crlShard),
    ]);
    const parts = [
      VERSION_V3,
      derTlv(0x02, v.serialContent),
      this.#signatureAlgorithm,
      this.#issuer,
      derTlv(0x30, concat([derTime(v.notBefore), derTime(v.notAfter)])),
      subject,
      v.subjectSpki,
      derHeader(0xa3, extensions.length + derHeader(0x30, extensions.length).length),
      derHeader(0x30, extensions.length),
      extensions,
    ];
    let n = 0;
    for (const p of parts) n += p.length;
    return concat([derHeader(0x30, n), ...parts]);
  }

  #keyUsageOf(key: SubjectKeyAlgorithm): Uint8Array {
    let der = this.#keyUsage.get(key.kind);
    if (!der) this.#keyUsage.set(key.kind, (der = encoded(leafKeyUsage(key))));
    return der;
  }

  /** CRL DP + AIA for a partition, encoded on first use: the shard is part of the CRL URL. */
  #publicationOf(crlShard: number | null): Uint8Array {
    let der = this.#publication.get(crlShard);
    if (!der) this.#publication.set(crlShard, (der = concat(leafPublicationExtensions(this.urls(crlShard)).map(encoded))));
    return der;
  }
}

function encoded(e: Extension | object): Uint8Array {
  return new Uint8Array(AsnConvert.serialize(e));
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

/** Name = SEQUENCE { SET { SEQUENCE { id-at-commonName, UTF8String } } } (RFC 5280 §4.1.2.4, §4.1.2.6). */
function commonNameOnly(cn: string): Uint8Array {
  const atv = derTlv(0x30, concat([CN_TYPE, derTlv(0x0c, Buffer.from(cn, "utf8"))]));
  return derTlv(0x30, derTlv(0x31, atv));
}

/**
 * GeneralNames (RFC 5280 §4.2.1.6) in the profile's order — DNS, IP, URI — with IMPLICIT tags:
 * dNSName [2] and uniformResourceIdentifier [6] IA5String, iPAddress [7] OCTET STRING.
 */
function generalNames(sans: Sans): Uint8Array {
  const names: Uint8Array[] = [];
  for (const d of sans.dns) names.push(derTlv(0x82, ia5(d)));
  for (const ip of sans.ip) names.push(derTlv(0x87, ipAddressOctets(ip)));
  for (const u of sans.uri) names.push(derTlv(0x86, ia5(u)));
  return derTlv(0x30, concat(names));
}

/** IA5String is ASCII (X.680 §41.4); the RA only admits ASCII names (core/sans.ts), so anything else is a bug. */
function ia5(text: string): Uint8Array {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) throw new Error("a SAN that is not ASCII reached the leaf template");
  }
  return Buffer.from(text, "latin1");
}

/** The 4 or 16 network-order octets of an IP address in text form (RFC 5280 §4.2.1.6). */
export function ipAddressOctets(ip: string): Uint8Array {
  const family = isIP(ip);
  if (family === 4) return Uint8Array.from(ip.split(".").map(Number));
  if (family !== 6) throw new Error(`not an IP address: ${ip}`);
  let text = ip;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".", lastColon)) {
    // An embedded IPv4 address in the last 32 bits (RFC 4291 §2.2 form 3).
    tail.push(...text.slice(lastColon + 1).split(".").map(Number));
    text = text.slice(0, lastColon + 1) + "0:0";
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const groups = (s: string) => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  if (tail.length === 4) out.set(tail, 12);
  return out;
}
