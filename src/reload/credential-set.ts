import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { checkOcspResponse } from "../agent/ocsp-fetch.js";

/** The names cert-agent publishes (SPEC "Agent files"), read through one resolution of `..data`. */
export const SET_FILES = { key: "key.pem", cert: "cert.pem", chain: "chain.pem", ca: "ca.pem", ocsp: "ocsp.der" } as const;
const DATA_LINK = "..data";

/** A published set that passed every check: what a TLS server or client is given. */
export interface CredentialSet {
  /** The version directory `..data` named when the set was read (it changes with every publication). */
  version: string;
  keyPem: string;
  /** The leaf followed by its intermediates: what `cert` in a secure context wants. */
  certChainPem: string;
  /** The trust bundle (roots) the agent pinned. */
  caPem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** The OCSP answer published with this leaf, when it was valid for it (checked again before each staple). */
  ocsp: { der: Buffer; thisUpdate: Date; nextUpdate: Date | undefined } | null;
}

/** Why a set was not taken; the caller keeps the last good one. */
export class RejectedSet extends Error {}

/**
 * Reads the set `dir/..data` names, all files through that one version directory (so a publication
 * in the middle cannot mix two sets), and checks it before anyone uses it: the key is the leaf's,
 * the leaf is inside its validity, and leaf → intermediates → a root in ca.pem verifies (each
 * signature and issuer name). A set that fails is refused as a whole; `ocsp.der` alone is optional
 * (a missing or unusable answer only means no staple).
 */
export function readCredentialSet(dir: string, now: Date = new Date()): CredentialSet {
  let version: string;
  try {
    version = readlinkSync(join(dir, DATA_LINK));
  } catch {
    throw new RejectedSet(`${dir} holds no published set (no ${DATA_LINK} link)`);
  }
  const read = (name: string): Buffer | undefined => {
    try {
      return readFileSync(join(dir, version, name));
    } catch {
      return undefined;
    }
  };
  const keyPem = read(SET_FILES.key)?.toString("utf8");
  const certPem = read(SET_FILES.cert)?.toString("utf8");
  const chainPem = read(SET_FILES.chain)?.toString("utf8");
  const caPem = read(SET_FILES.ca)?.toString("utf8");
  if (!keyPem || !certPem || !caPem) throw new RejectedSet(`set ${version} is incomplete (key.pem, cert.pem and ca.pem are required)`);

  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch {
    throw new RejectedSet(`set ${version}: cert.pem is not a certificate`);
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new RejectedSet(`set ${version}: key.pem does not match cert.pem`);
  } catch (e) {
    if (e instanceof RejectedSet) throw e;
    throw new RejectedSet(`set ${version}: key.pem is not a usable private key`);
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (now < notBefore || now > notAfter) throw new RejectedSet(`set ${version}: certificate ${leaf.serialNumber.toLowerCase()} is not valid now (${leaf.validFrom} – ${leaf.validTo})`);

  // chain.pem may hold the leaf first (cert-agent before the certbot naming) or only the intermediates.
  const intermediates = splitPem(chainPem ?? "")
    .map((p) => new X509Certificate(p))
    .filter((c) => !c.raw.equals(leaf.raw));
  const roots = splitPem(caPem).map((p) => new X509Certificate(p));
  if (roots.length === 0) throw new RejectedSet(`set ${version}: ca.pem holds no certificate`);
  const path = [leaf, ...intermediates];
  for (let i = 0; i + 1 < path.length; i++) {
    if (!path[i]!.checkIssued(path[i + 1]!) || !path[i]!.verify(path[i + 1]!.publicKey)) {
      throw new RejectedSet(`set ${version}: chain.pem does not chain (${path[i]!.subject.replace(/\n/g, ", ")})`);
    }
  }
  const top = path[path.length - 1]!;
  if (!roots.some((r) => top.checkIssued(r) && top.verify(r.publicKey))) {
    throw new RejectedSet(`set ${version}: the chain does not verify to a root in ca.pem`);
  }

  let ocsp: CredentialSet["ocsp"] = null;
  const ocspDer = read(SET_FILES.ocsp);
  const issuer = intermediates[0] ?? roots.find((r) => leaf.checkIssued(r));
  if (ocspDer && issuer) {
    try {
      const r = checkOcspResponse(ocspDer, leaf.raw, issuer.raw, now);
      if (r.status === "good") ocsp = { der: r.der, thisUpdate: r.thisUpdate, nextUpdate: r.nextUpdate };
    } catch {
      ocsp = null; // not stapled: a staple a client rejects is worse than none
    }
  }
  return {
    version,
    keyPem,
    certChainPem: path.map((c) => c.toString()).join(""),
    caPem,
    serial: leaf.serialNumber.toLowerCase(),
    notBefore,
    notAfter,
    ocsp,
  };
}

/** The staple to send now: only inside the answer's thisUpdate..nextUpdate window (RFC 6960 §4.2.2.1). */
export function freshStaple(set: CredentialSet, now: Date): Buffer | undefined {
  const o = set.ocsp;
  if (!o) return undefined;
  if (now < o.thisUpdate) return undefined;
  if (o.nextUpdate && now >= o.nextUpdate) return undefined;
  return o.der;
}

function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
