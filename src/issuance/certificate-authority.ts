import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import type { SubjectKeyAlgorithm } from "../core/key-type.js";
import type { Sans } from "../core/sans.js";
import { serialFromBytes, type SerialHex } from "../core/serial.js";
import { keyIdentifier, type CertificateInfo } from "../x509/certificate-info.js";
import { walkTbs } from "../x509/certificate-walk.js";
import { LeafTemplate } from "../x509/leaf-template.js";
import { lintLeaf } from "../x509/lint.js";
import type { PublicationUrls } from "../x509/profile.js";
import type { Issuer } from "./issuer.js";
import { randomSerialContent } from "./serial.js";
import { signTbs } from "./sign-tbs.js";

/** A leaf to sign: the RA has already decided the SANs and verified the key. */
export interface LeafRequest {
  subjectSpki: Uint8Array;
  subjectKey: SubjectKeyAlgorithm;
  sans: Sans;
  /** Requested lifetime; clamped to the profile maximum and the issuer's own notAfter. */
  ttlMs: number;
  /**
   * Called with the exact TBS bytes after the lint and before the signature: the RA records the
   * intent in the issuance log here, durably, so no signature is ever made that the log does not
   * announce (Boulder's issuance cycle). "serial_collision": that serial is taken, draw another.
   */
  beforeSign?: (tbs: { serial: SerialHex; tbsDer: Uint8Array }) => Promise<"committed" | "serial_collision">;
}

/** The serial drawn for a leaf was already announced or stored; nothing was signed. */
export class SerialCollision extends Error {
  constructor(readonly serial: SerialHex) {
    super(`serial ${serial} is taken`);
    this.name = "SerialCollision";
  }
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
  /**
   * The certificate of the intermediate with this key id, when it is another of ours: a leaf
   * signed just before a rotation is handed out with its own issuer's certificate as its chain.
   */
  intermediateOf?(issuerKeyIdHex: string): Uint8Array | undefined;
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
  readonly #template: LeafTemplate;

  constructor(
    readonly issuer: Issuer,
    private readonly profile: LeafProfile,
    private readonly clock: Clock,
    /** Our other intermediates, by key id (after a rotation; see LeafIssuer.intermediateOf). */
    private readonly others: (keyIdHex: string) => Issuer | undefined = () => undefined,
  ) {
    if (profile.maxTtlMs <= 0 || profile.backdateMs < 0) throw new Error("invalid leaf profile");
    this.#template = new LeafTemplate(
      { subjectDer: issuer.info.subjectDer, keyId: issuer.keyId, scheme: issuer.ref.scheme },
      (shard) => profile.urls(issuer.keyIdHex, shard),
    );
  }

  intermediateOf(issuerKeyIdHex: string): Uint8Array | undefined {
    return issuerKeyIdHex === this.issuer.keyIdHex ? this.issuer.der : this.others(issuerKeyIdHex)?.der;
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
    const tbsDer = this.#template.encode({
      serialContent,
      subjectSpki: req.subjectSpki,
      subjectKeyId: keyIdentifier(req.subjectSpki),
      subjectKey: req.subjectKey,
      sans: req.sans,
      notBefore,
      notAfter,
      crlShard,
    });
    // Lint what will actually be signed: the walk reads every TLV of these exact bytes back (DER
    // lengths, nothing trailing) into the fields the lint checks; it never trusts the inputs.
    const info = walkTbs(tbsDer);
    if (!info) throw new Error("leaf lint failed: the TBS the template built is not ordinary DER");
    const problems = lintLeaf(info, {
      issuerNotBefore: this.issuer.info.notBefore,
      issuerNotAfter: this.issuer.info.notAfter,
      issuerKeyId: this.issuer.keyId,
      authorizedSans: req.sans,
      maxLifetimeMs: this.profile.maxTtlMs + this.profile.backdateMs + 1000,
      subjectSpki: req.subjectSpki,
    });
    if (problems.length > 0) throw new Error(`leaf lint failed: ${problems.join("; ")}`);
    if (req.beforeSign && (await req.beforeSign({ serial: info.serial, tbsDer })) === "serial_collision") throw new SerialCollision(info.serial);
    const der = await signTbs(this.issuer.signer, tbsDer);
    // The certificate's fields are the TBS's, byte for byte (signTbs only wraps it): no re-parse.
    return { serial: info.serial, der, info, issuerKeyIdHex: this.issuer.keyIdHex, crlShard };
  }
}
