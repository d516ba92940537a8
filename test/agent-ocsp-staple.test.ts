/**
 * Which OCSP responses cert-agent accepts for stapling (RFC 6960 §4.2.2.1–§4.2.2.2, §3.2):
 * responses are built here from keys and certificates the test generates, signed with node:crypto
 * over the exact ResponseData bytes, so each refusal is caused by the one property a case changes.
 * The last case fetches a real answer from the daemon's responder.
 */
import "reflect-metadata";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyObject, sign as nodeSign, webcrypto } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate, Name } from "@peculiar/asn1-x509";
import {
  BasicOCSPResponse,
  CertStatus,
  KeyHash,
  OCSPResponse,
  OCSPResponseStatus,
  ResponderID,
  ResponseBytes,
  ResponseData,
  SingleResponse,
  id_pkix_ocsp_basic,
} from "@peculiar/asn1-ocsp";
import { OctetString } from "@peculiar/asn1-schema";
import {
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  X509CertificateGenerator,
  type Extension,
} from "@peculiar/x509";
import { createHash } from "node:crypto";
import { certIdFor, checkOcspResponse, fetchOcsp, OCSP_CLOCK_SKEW_MS } from "../src/agent/ocsp-fetch.js";
import { bootstrapTrust } from "../src/agent/trust.js";
import { CaApi } from "../src/agent/ca-client.js";
import { makeKeyAndCsr } from "../src/agent/csr.js";
import { allPem, fromPem } from "../src/x509/pem.js";
import { agentWorkspace, rootFingerprint } from "./harness/cert-agent.js";
import type { CaWorkspace, DaemonProcess } from "./harness/fleetca-process.js";

const subtle = webcrypto.subtle as unknown as SubtleCrypto;
const ECDSA = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const ECDSA_SHA256 = "1.2.840.10045.4.3.2";
const MIN = 60_000;
const H = 60 * MIN;
/** Whole seconds: GeneralizedTime in OCSP carries no fractions (RFC 5280 §4.1.2.5.2 practice). */
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);

interface Party {
  der: Uint8Array;
  keys: CryptoKeyPair;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(ECDSA, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** A certificate for `name` under `issuer` (self-signed when issuer is null). */
async function certify(
  name: string,
  issuer: { name: string; keys: CryptoKeyPair } | null,
  opts: { ca?: boolean; eku?: string[]; notBefore?: Date; notAfter?: Date; keys?: CryptoKeyPair } = {},
): Promise<Party> {
  const keys = opts.keys ?? (await newKeys());
  const extensions: Extension[] = [];
  if (opts.ca) {
    extensions.push(new BasicConstraintsExtension(true, 0, true));
    extensions.push(new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true));
  } else {
    extensions.push(new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true));
  }
  if (opts.eku) extensions.push(new ExtendedKeyUsageExtension(opts.eku));
  const cert = await X509CertificateGenerator.create({
    subject: `CN=${name}`,
    issuer: `CN=${issuer?.name ?? name}`,
    notBefore: opts.notBefore ?? new Date(NOW.getTime() - H),
    notAfter: opts.notAfter ?? new Date(NOW.getTime() + 24 * H),
    publicKey: keys.publicKey,
    signingKey: (issuer?.keys ?? keys).privateKey,
    signingAlgorithm: ECDSA,
    extensions,
  });
  return { der: new Uint8Array(cert.rawData), keys };
}

function subjectOf(der: Uint8Array): Name {
  return AsnConvert.parse(der, Certificate).tbsCertificate.subject;
}

function keyHashOf(der: Uint8Array): Uint8Array {
  const bits = AsnConvert.parse(der, Certificate).tbsCertificate.subjectPublicKeyInfo.subjectPublicKey;
  return createHash("sha1").update(new Uint8Array(bits)).digest();
}

interface ResponseSpec {
  leaf: Uint8Array;
  issuer: Uint8Array;
  /** Whose key signs. */
  signer: CryptoKeyPair;
  /** Which certificate the ResponderID names, and how. */
  responder: { der: Uint8Array; by: "key" | "name" };
  certs?: Uint8Array[];
  thisUpdate?: Date;
  /** null: no nextUpdate. */
  nextUpdate?: Date | null;
  corruptSignature?: boolean;
}

/** A BasicOCSPResponse about `leaf`, signed with node:crypto over the serialised ResponseData. */
function ocspResponse(s: ResponseSpec): Uint8Array {
  const thisUpdate = s.thisUpdate ?? new Date(NOW.getTime() - MIN);
  const nextUpdate = s.nextUpdate === undefined ? new Date(NOW.getTime() + 4 * H) : s.nextUpdate;
  const data = new ResponseData({
    responderID:
      s.responder.by === "key"
        ? new ResponderID({ byKey: new KeyHash(keyHashOf(s.responder.der)) })
        : new ResponderID({ byName: subjectOf(s.responder.der) }),
    producedAt: thisUpdate,
    responses: [
      new SingleResponse({
        certID: certIdFor(s.leaf, s.issuer),
        certStatus: new CertStatus({ good: null }),
        thisUpdate,
        ...(nextUpdate && { nextUpdate }),
      }),
    ],
  });
  const tbs = new Uint8Array(AsnConvert.serialize(data));
  const signature = nodeSign("sha256", tbs, KeyObject.from(s.signer.privateKey as unknown as webcrypto.CryptoKey));
  if (s.corruptSignature) signature[signature.length - 1]! ^= 0x01;
  const basic = new BasicOCSPResponse({
    tbsResponseData: data,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: ECDSA_SHA256 }),
    signature: new Uint8Array(signature).buffer,
    ...(s.certs && { certs: s.certs.map((c) => AsnConvert.parse(c, Certificate)) }),
  });
  return new Uint8Array(
    AsnConvert.serialize(
      new OCSPResponse({
        responseStatus: OCSPResponseStatus.successful,
        responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) }),
      }),
    ),
  );
}

describe("OCSP staple acceptance (RFC 6960 §4.2.2.2 authorisation, §4.2.2.1 currency)", () => {
  let issuer: Party;
  let leaf: Party;
  let otherLeaf: Party;
  let responder: Party; // delegated, id-kp-OCSPSigning
  let plainDelegate: Party; // issued by the issuer, no OCSPSigning EKU
  let foreignResponder: Party; // OCSPSigning, but certified by another CA of the same name
  let expiredResponder: Party;
  let bystander: Party; // an unrelated certificate carried first in `certs`
  const ISSUER = "Test Issuing CA";

  beforeAll(async () => {
    issuer = await certify(ISSUER, null, { ca: true });
    const by = { name: ISSUER, keys: issuer.keys };
    leaf = await certify("leaf.internal", by);
    otherLeaf = await certify("other.internal", by);
    responder = await certify("OCSP Responder", by, { eku: [ExtendedKeyUsage.ocspSigning] });
    plainDelegate = await certify("Not A Responder", by, { eku: [ExtendedKeyUsage.serverAuth] });
    const impostor = await certify(ISSUER, null, { ca: true }); // same name, other key
    foreignResponder = await certify("Foreign Responder", { name: ISSUER, keys: impostor.keys }, { eku: [ExtendedKeyUsage.ocspSigning] });
    expiredResponder = await certify("Expired Responder", by, {
      eku: [ExtendedKeyUsage.ocspSigning],
      notBefore: new Date(NOW.getTime() - 48 * H),
      notAfter: new Date(NOW.getTime() - H),
    });
    bystander = await certify("Bystander", by, { eku: [ExtendedKeyUsage.ocspSigning] });
  });

  const check = (der: Uint8Array, now = NOW) => checkOcspResponse(der, leaf.der, issuer.der, now);
  const byIssuer = (o: Partial<ResponseSpec> = {}) =>
    ocspResponse({ leaf: leaf.der, issuer: issuer.der, signer: issuer.keys, responder: { der: issuer.der, by: "key" }, ...o });
  const delegated = (d: Party, o: Partial<ResponseSpec> = {}) =>
    ocspResponse({ leaf: leaf.der, issuer: issuer.der, signer: d.keys, responder: { der: d.der, by: "name" }, certs: [d.der], ...o });

  it("accepts a good answer signed by the issuer itself, ResponderID byKey or byName", () => {
    const r = check(byIssuer());
    expect(r.status).toBe("good");
    expect(r.thisUpdate.getTime()).toBe(NOW.getTime() - MIN);
    expect(r.nextUpdate?.getTime()).toBe(NOW.getTime() + 4 * H);
    expect(check(byIssuer({ responder: { der: issuer.der, by: "name" } })).status).toBe("good");
  });

  it("accepts a delegated responder the issuer certified with id-kp-OCSPSigning, found by ResponderID among several certs", () => {
    expect(check(delegated(responder)).status).toBe("good");
    expect(check(delegated(responder, { responder: { der: responder.der, by: "key" } })).status).toBe("good");
    // The responder's cert is not first: the one the ResponderID names is used, not certs[0].
    expect(check(delegated(responder, { certs: [bystander.der, responder.der] })).status).toBe("good");
  });

  it("refuses a delegated certificate without id-kp-OCSPSigning", () => {
    expect(() => check(delegated(plainDelegate))).toThrow(/lacks extendedKeyUsage id-kp-OCSPSigning/);
  });

  it("refuses a delegated responder certified by another issuer (same name, other key)", () => {
    expect(() => check(delegated(foreignResponder))).toThrow(/not certified by the certificate's issuer/);
  });

  it("refuses a delegated responder outside its own validity", () => {
    expect(() => check(delegated(expiredResponder))).toThrow(/outside its validity/);
  });

  it("refuses a ResponderID that names neither the issuer nor a carried certificate", () => {
    // Signed by the responder's key and naming it, but its certificate is not in the response.
    expect(() => check(delegated(responder, { certs: [bystander.der] }))).toThrow(/names neither the issuer nor any certificate/);
  });

  it("refuses a stale answer: nextUpdate passed, or exactly now", () => {
    expect(() => check(byIssuer({ thisUpdate: new Date(NOW.getTime() - 5 * H), nextUpdate: new Date(NOW.getTime() - H) }))).toThrow(/stale/);
    expect(() => check(byIssuer({ nextUpdate: NOW }))).toThrow(/stale/);
    // The same bytes are fine one second before nextUpdate.
    expect(check(byIssuer({ nextUpdate: NOW }), new Date(NOW.getTime() - 1_000)).status).toBe("good");
  });

  it("tolerates a thisUpdate slightly ahead (clock skew), refuses one beyond the margin", () => {
    expect(check(byIssuer({ thisUpdate: new Date(NOW.getTime() + 2 * MIN) })).status).toBe("good");
    expect(check(byIssuer({ thisUpdate: new Date(NOW.getTime() + OCSP_CLOCK_SKEW_MS) })).status).toBe("good");
    expect(() => check(byIssuer({ thisUpdate: new Date(NOW.getTime() + OCSP_CLOCK_SKEW_MS + 1_000) }))).toThrow(/in the future/);
  });

  it("without nextUpdate, accepts only a recent thisUpdate", () => {
    expect(check(byIssuer({ nextUpdate: null })).nextUpdate).toBeUndefined();
    expect(() => check(byIssuer({ nextUpdate: null, thisUpdate: new Date(NOW.getTime() - 2 * H) }))).toThrow(/no nextUpdate/);
  });

  it("refuses an answer about another certificate", () => {
    const other = ocspResponse({ leaf: otherLeaf.der, issuer: issuer.der, signer: issuer.keys, responder: { der: issuer.der, by: "key" } });
    expect(() => check(other)).toThrow(/does not cover this certificate/);
    expect(checkOcspResponse(other, otherLeaf.der, issuer.der, NOW).status).toBe("good");
  });

  it("refuses bytes that are not an OCSPResponse with an AgentError, not a parser exception", () => {
    expect(() => check(Uint8Array.of(0x30, 0x03, 0x02, 0x01))).toThrow(expect.objectContaining({ name: "AgentError", message: expect.stringMatching(/not a DER OCSPResponse/) }));
    // tryLater (RFC 6960 §4.2.1): a valid response without responseBytes.
    expect(() => check(Uint8Array.of(0x30, 0x03, 0x0a, 0x01, 0x03))).toThrow(/answered status 3/);
  });

  it("refuses a bad signature, and a signature by a key the ResponderID does not name", () => {
    expect(() => check(byIssuer({ corruptSignature: true }))).toThrow(/signature does not verify/);
    expect(() => check(byIssuer({ signer: responder.keys }))).toThrow(/signature does not verify with the key of the issuer/);
  });
});

describe("OCSP staple acceptance against the real daemon's responder", () => {
  let ws: CaWorkspace;
  let d: DaemonProcess;
  beforeAll(async () => {
    ws = await agentWorkspace();
    d = await ws.start();
  }, 30_000);
  afterAll(async () => {
    await d?.stop();
    ws?.remove();
  });

  it("accepts the CA's own answer for a freshly issued cert, and refuses it once past nextUpdate", async () => {
    const anchors = await bootstrapTrust(d.apiUrl, await rootFingerprint(d.publicUrl));
    const { csrPem } = makeKeyAndCsr(["staple.internal"]);
    const answer = await new CaApi(d.apiUrl, anchors.pem).sign(csrPem, await ws.token("staple", ["staple.internal"]));
    const leafDer = fromPem(answer.certificate, ["CERTIFICATE"])!;
    const issuerDer = allPem(answer.chain, "CERTIFICATE")[0]!;
    const now = new Date();
    const r = await fetchOcsp(leafDer, issuerDer, now);
    expect(r.status).toBe("good");
    expect(r.nextUpdate).toBeDefined();
    expect(r.thisUpdate.getTime()).toBeLessThanOrEqual(now.getTime() + OCSP_CLOCK_SKEW_MS);
    // The same bytes, judged at the moment they expire.
    expect(() => checkOcspResponse(r.der, leafDer, issuerDer, r.nextUpdate!)).toThrow(/stale/);
  }, 20_000);
});
