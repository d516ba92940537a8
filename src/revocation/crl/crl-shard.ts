import type { SerialHex } from "../../core/serial.js";

/**
 * The CRL partition a new certificate is assigned to (config `crl.shards`), as Let's Encrypt and
 * AWS Private CA partition CRLs (CA/B Forum ballot SC-58): decided once, from the serial, when the
 * certificate is made, and written into its CRL distribution point, so a relying party fetches
 * one small CRL instead of the issuer's whole list. Serials are 128 random bits
 * (issuance/serial.ts), so their last 32 bits spread certificates evenly over the partitions.
 * With one shard there is no partition: the distribution point names the issuer's full CRL.
 */
export function crlShardOf(serial: SerialHex, shards: number): number | null {
  if (!Number.isInteger(shards) || shards < 1) throw new RangeError(`bad CRL shard count ${shards}`);
  if (shards === 1) return null;
  return Number.parseInt(serial.slice(-8), 16) % shards;
}

/** The URL a certificate's CRL distribution point names, and a partition's IDP repeats (RFC 5280 §5.2.5). */
export function crlUrl(publicUrl: string, issuerKeyIdHex: string, shard: number | null): string {
  return shard === null ? `${publicUrl}/crl/${issuerKeyIdHex}` : `${publicUrl}/crl/${issuerKeyIdHex}/${shard}`;
}
