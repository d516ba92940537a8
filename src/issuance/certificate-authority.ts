import { AsnConvert } from "@peculiar/asn1-schema";
import { TBSCertificate } from "@peculiar/asn1-x509";
import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import type { SubjectKeyAlgorithm } from "../core/key-type.js";
import type { Sans } from "../core/sans.js";
import { serialFromBytes, type SerialHex } from "../core/serial.js";
import { describeTbs, keyIdentifier, parseCertificateDer, type CertificateInfo } from "../x509/certificate-info.js";
import { lintLeaf } from "../x509/lint.js";
import { leafTbs, type PublicationUrls } from "../x509/profile.js";
import type { Issuer } from "./issuer.js";
import { randomSerialContent } from "./serial.js";
import { serializeTbs, signTbs } from "./sign-tbs.js";

/** A leaf to sign: the RA has already decided the SANs and verified the key. */
export interface LeafRequest {
  subjectSpki: Uint8Array;
  subjectKey: SubjectKeyAlgorithm;
  sans: Sans;
  /** Requested lifetime; clamped to the profile maximum and the issuer's own notAfter. */
  ttlMs: number;
}

export interface IssuedLeaf {
  serial: SerialHex;
  der: Uint8Array;
  info: CertificateInfo;
  issuerKeyIdHex: string;
  /** The CRL partition its distribution point names (null: the issuer's full CRL). */
  crlShard: number | null;
}

/**
 * The port a worker pool will host: the RA only ever asks "sign this leaf" and gets DER back.
 */
export interface LeafIssuer {
  readonly issuer: Issuer;
  issueLeaf(req: LeafRequest): Promise<IssuedLeaf>;
}

export interface LeafProfile {
  maxTtlMs: number;
  /** notBefore is set this far in the past to absorb relying-party clock skew. */
  backdateMs: number;
  /** The CRL partition for a new serial (revocation/crl/crl-shard.ts); null for none. */
  crlShard(serial: SerialHex): number | null;
  /** Builds the CRL DP / AIA URLs for an issuer key id and the certificate's CRL partition. */
  urls(issuerKeyIdHex: string, crlShard: number | null): PublicationUrls;
}

/**
 * The CA in Boulder's sense: holds one issuer and its signer, builds the TBS from the profile,
 * lints the exact bytes, signs. Knows nothing of HTTP, tokens or storage.
 */
export class CertificateAuthority implements LeafIssuer {
  constructor(
    readonly issuer: Issuer,
    private readonly profile: LeafProfile,
    private readonly clock: Clock,
  ) {
    if (profile.maxTtlMs <= 0 || profile.backdateMs < 0) throw new Error("invalid leaf profile");
  }

  async issueLeaf(req: LeafRequest): Promise<IssuedLeaf> {
    const now = this.clock.now().getTime();
    const notBefore = new Date(Math.max(now - this.profile.backdateMs, this.issuer.info.notBefore.getTime()));
    const notAfter = new Date(
      Math.min(now + Math.min(req.ttlMs, this.profile.maxTtlMs), this.issuer.info.notAfter.getTime()),
    );
    if (notAfter.getTime() <= now) {
      throw new CaError("internal", "issuer certificate has expired");
    }
    const serialContent = randomSerialContent();
    // The partition is fixed before the TBS exists: its URL is part of what gets signed.
    const crlShard = this.profile.crlShard(serialFromBytes(serialContent.subarray(serialContent[0] === 0 ? 1 : 0)));
    const tbs = leafTbs({
      serialContent,
      issuer: this.issuer.ref,
      subjectSpki: req.subjectSpki,
      subjectKeyId: keyIdentifier(req.subjectSpki),
      subjectKey: req.subjectKey,
      sans: req.sans,
      notBefore,
      notAfter,
      urls: this.profile.urls(this.issuer.keyIdHex, crlShard),
    });
    const tbsDer = serializeTbs(tbs);
    // Lint what will actually be signed: decode the serialised bytes, not the template object.
    const info = describeTbs(AsnConvert.parse(tbsDer, TBSCertificate));
    const problems = lintLeaf(info, {
      issuerNotBefore: this.issuer.info.notBefore,
      issuerNotAfter: this.issuer.info.notAfter,
      issuerKeyId: this.issuer.keyId,
      authorizedSans: req.sans,
      maxLifetimeMs: this.profile.maxTtlMs + this.profile.backdateMs + 1000,
      subjectSpki: req.subjectSpki,
    });
    if (problems.length > 0) throw new Error(`leaf lint failed: ${problems.join("; ")}`);
    const der = await signTbs(this.issuer.signer, tbsDer);
    return { serial: info.serial, der, info: parseCertificateDer(der).info, issuerKeyIdHex: this.issuer.keyIdHex, crlShard };
  }
}
