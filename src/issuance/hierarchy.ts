import type { Clock } from "../core/clock.js";
import type { Signer } from "../signing/signer.js";
import { SIGNATURE_SCHEMES } from "../core/key-type.js";
import { keyIdentifier } from "../x509/certificate-info.js";
import { caTbs, nameOf } from "../x509/profile.js";
import type { Name } from "@peculiar/asn1-x509";
import type { Issuer } from "./issuer.js";
import { randomSerialContent } from "./serial.js";
import { serializeTbs, signTbs } from "./sign-tbs.js";

const CA_BACKDATE_MS = 60_000;

/** Self-signed root: pathLen 1 allows exactly one intermediate level below it. */
export async function createRootCertificate(
  signer: Signer,
  opts: { caName: string; validityMs: number; clock: Clock; subject?: Name },
): Promise<Uint8Array> {
  const now = opts.clock.now().getTime();
  const tbs = caTbs({
    serialContent: randomSerialContent(),
    subject: opts.subject ?? nameOf({ o: opts.caName, cn: `${opts.caName} Root CA` }),
    subjectSpki: signer.publicKeySpki,
    subjectKeyId: keyIdentifier(signer.publicKeySpki),
    selfScheme: SIGNATURE_SCHEMES[signer.keyType],
    pathLen: 1,
    notBefore: new Date(now - CA_BACKDATE_MS),
    notAfter: new Date(now + opts.validityMs),
  });
  return signTbs(signer, serializeTbs(tbs));
}

/**
 * The online intermediate (pathLen 0: it issues leaves only). Its validity never outlives the
 * root's; the date in its CN tells rotated intermediates apart in operator tools, and the start of
 * its key id keeps two made the same day apart for relying parties: a CRL is matched to its CA by
 * issuer name first (RFC 5280 §5.1.2.3, §6.3.3), so each CA needs a distinct name (§4.1.2.6).
 */
export async function createIntermediateCertificate(
  root: Issuer,
  subjectSigner: Signer,
  opts: { caName: string; validityMs: number; clock: Clock; crlUrl?: string },
): Promise<Uint8Array> {
  const now = opts.clock.now();
  const notAfter = Math.min(now.getTime() + opts.validityMs, root.info.notAfter.getTime());
  const subjectKeyId = keyIdentifier(subjectSigner.publicKeySpki);
  const tbs = caTbs({
    serialContent: randomSerialContent(),
    subject: nameOf({ o: opts.caName, cn: `${opts.caName} Intermediate CA ${now.toISOString().slice(0, 10)} ${Buffer.from(subjectKeyId).toString("hex").slice(0, 8)}` }),
    subjectSpki: subjectSigner.publicKeySpki,
    subjectKeyId,
    issuer: root.ref,
    selfScheme: SIGNATURE_SCHEMES[subjectSigner.keyType],
    pathLen: 0,
    notBefore: new Date(Math.max(now.getTime() - CA_BACKDATE_MS, root.info.notBefore.getTime())),
    notAfter: new Date(notAfter),
    ...(opts.crlUrl && { crlUrl: opts.crlUrl }),
  });
  return signTbs(root.signer, serializeTbs(tbs));
}

/**
 * The cross certificate of a root rotation: the NEW root's exact subject (the same name as the
 * old root's, so this certificate is self-issued and not counted in path length, RFC 5280
 * §4.2.1.9) and key, issued and signed by the OLD root (RFC 4210 §4.4 "NewWithOld"). A relying
 * party that trusts only the old root builds new-leaf → new-intermediate → this → old root, so
 * leaves from the new hierarchy verify everywhere before every host trusts the new root.
 * It lives no longer than either root, and names the old root's CRL.
 */
export async function createCrossCertificate(
  oldRoot: Issuer,
  newRoot: { subject: Name; spki: Uint8Array; keyType: Signer["keyType"]; notAfter: Date },
  opts: { clock: Clock; crlUrl: string },
): Promise<Uint8Array> {
  const now = opts.clock.now().getTime();
  const tbs = caTbs({
    serialContent: randomSerialContent(),
    subject: newRoot.subject,
    subjectSpki: newRoot.spki,
    subjectKeyId: keyIdentifier(newRoot.spki),
    issuer: oldRoot.ref,
    selfScheme: SIGNATURE_SCHEMES[newRoot.keyType],
    pathLen: 1,
    notBefore: new Date(Math.max(now - CA_BACKDATE_MS, oldRoot.info.notBefore.getTime())),
    notAfter: new Date(Math.min(newRoot.notAfter.getTime(), oldRoot.info.notAfter.getTime())),
    crlUrl: opts.crlUrl,
  });
  return signTbs(oldRoot.signer, serializeTbs(tbs));
}
