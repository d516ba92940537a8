import { canonicalIp, emptySans, type Sans } from "../core/sans.js";
import { DerError, DerReader, TAG, contextTag, readOid, type Tlv } from "./der-reader.js";
import { OID } from "./oids.js";

/**
 * The pieces the DER walks (csr-walk.ts for requests, certificate-walk.ts for certificates) share.
 * Each walk only accepts the shape every ordinary value has and throws `Unusual` for anything
 * else, so its caller hands the value to the ASN.1 object model, which decides (and words) the
 * outcome. A walk may therefore be strict: being strict never refuses anything by itself.
 */

/** Signals "not the ordinary shape": the object model decides. */
export class Unusual extends DerError {}

/** Name ::= SEQUENCE OF RelativeDistinguishedName (RFC 5280 §4.1.2.4): the first CN, and whether it is empty. */
export function walkName(parent: DerReader, t: Tlv): { commonName: string | null; empty: boolean } {
  const rdns = parent.inside(t);
  let cn: string | null = null;
  const empty = rdns.done;
  while (!rdns.done) {
    const rdn = rdns.inside(rdns.expect(TAG.SET, "RelativeDistinguishedName"));
    if (rdn.done) throw new Unusual("empty RDN");
    while (!rdn.done) {
      // AttributeTypeAndValue ::= SEQUENCE { type OID, value ANY }
      const atv = rdn.inside(rdn.expect(TAG.SEQUENCE, "AttributeTypeAndValue"));
      const type = strictOid(atv.content(atv.expect(TAG.OID, "type")));
      const v = atv.next();
      atv.finish("AttributeTypeAndValue");
      const text = asciiString(atv, v);
      if (cn === null && type === OID.commonName) cn = text;
    }
  }
  return { commonName: cn, empty };
}

/** Tags whose ASCII content every decoder reads alike (X.680 §41). */
const ASCII_STRING_TAGS = new Set([0x0c /* UTF8String */, 0x13 /* PrintableString */, 0x16 /* IA5String */]);

function asciiString(r: DerReader, t: Tlv): string {
  if (!ASCII_STRING_TAGS.has(t.tag)) throw new Unusual(`string tag 0x${t.tag.toString(16)}`);
  return ascii(r.content(t));
}

export function ascii(bytes: Uint8Array): string {
  for (const b of bytes) if (b >= 0x80) throw new Unusual("non-ASCII text");
  return Buffer.from(bytes).toString("latin1");
}

/**
 * GeneralNames ::= SEQUENCE OF GeneralName (RFC 5280 §4.2.1.6), IMPLICIT tags: dNSName [2]
 * IA5String, uniformResourceIdentifier [6] IA5String, iPAddress [7] OCTET STRING of 4 or 16
 * octets. Any other name (rfc822Name, otherName…) goes to the object model, which says why it is
 * refused (a CSR) or counts it (a certificate). Normalised as the object model's readers do: DNS
 * lower-case, IPs canonical, URIs as written.
 */
export function walkGeneralNames(der: Uint8Array): Sans {
  const top = new DerReader(der);
  const names = top.inside(top.expect(TAG.SEQUENCE, "GeneralNames"));
  top.finish("subjectAltName");
  const sans = emptySans();
  while (!names.done) {
    const n = names.next();
    const v = names.content(n);
    if (n.tag === contextTag(2, false)) sans.dns.push(ascii(v).toLowerCase());
    else if (n.tag === contextTag(6, false)) sans.uri.push(ascii(v));
    else if (n.tag === contextTag(7, false) && (v.length === 4 || v.length === 16)) sans.ip.push(canonicalIp(ipText(v)));
    else throw new Unusual(`GeneralName tag 0x${n.tag.toString(16)}`);
  }
  return sans;
}

/** The textual form of a 4- or 16-octet iPAddress (RFC 5280 §4.2.1.6), before canonicalIp. */
function ipText(v: Uint8Array): string {
  if (v.length === 4) return v.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((v[i]! << 8) | v[i + 1]!).toString(16));
  return groups.join(":");
}

/** An OID whose subidentifiers are minimal (X.690 §8.19.2) and small enough to read exactly. */
export function strictOid(content: Uint8Array): string {
  let start = true;
  for (const b of content) {
    if (start && b === 0x80) throw new Unusual("non-minimal OID subidentifier");
    start = !(b & 0x80);
  }
  if (content.length > 64) throw new Unusual("long OID");
  let run = 0;
  for (const b of content) {
    run = b & 0x80 ? run + 1 : 0;
    // 7 octets hold 49 bits: every arc stays a safe integer in readOid.
    if (run >= 7) throw new Unusual("OID arc too large");
  }
  return readOid(content);
}

/** A DER BOOLEAN's content (X.690 §11.1: FALSE is 00, TRUE is FF, nothing else). */
export function strictBoolean(content: Uint8Array): boolean {
  if (content.length !== 1 || (content[0] !== 0 && content[0] !== 0xff)) throw new Unusual("BOOLEAN not DER");
  return content[0] === 0xff;
}

/**
 * SubjectPublicKeyInfo (RFC 5280 §4.1.2.7): checks the shape only; node:crypto decides the key.
 * Parameters are absent (Ed25519, RFC 8410 §3), NULL (RSA, RFC 3279 §2.3.1) or a namedCurve OID
 * (RFC 5480 §2.1.1); explicit curve parameters are a constructed value: the object model's case.
 */
export function walkSpkiShape(parent: DerReader, t: Tlv): void {
  const r = parent.inside(t);
  const alg = r.inside(r.expect(TAG.SEQUENCE, "algorithm"));
  strictOid(alg.content(alg.expect(TAG.OID, "algorithm")));
  if (!alg.done) {
    const p = alg.next();
    if (p.tag === TAG.OID) strictOid(alg.content(p));
    else if (p.tag !== TAG.NULL || p.end !== p.contentStart) throw new Unusual("SPKI parameters");
  }
  alg.finish("SPKI algorithm");
  const bits = r.content(r.expect(TAG.BIT_STRING, "subjectPublicKey"));
  if (bits.length < 1 || bits[0] !== 0) throw new Unusual("public key has unused bits");
  r.finish("SubjectPublicKeyInfo");
}
