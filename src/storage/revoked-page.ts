import { isSerialHex, type SerialHex } from "../core/serial.js";
import type { RevokedPage, RevokedRow } from "./ports.js";

/** The octets of a packed entry besides its serial: length, seconds, reason (ports.ts RevokedPage). */
export const PACKED_ENTRY_FIXED_OCTETS = 10;
/** The reason octet of an entry without a reason code. */
export const NO_REASON = 0xff;

/**
 * Packs rows into a RevokedPage, entry by entry with nothing clever: what a store that reads
 * rows (or the root CRL's handful of entries) hands the builder, and the reference a store's
 * own packing (SQL in sqlite-store.ts) is tested against. Throws on a serial that is not the
 * store's lower-case hex of 1–20 octets.
 */
export function packRevokedRows(rows: readonly RevokedRow[]): RevokedPage {
  const parts: Buffer[] = [];
  for (const [serial, revokedAtMs, reason] of rows) {
    if (!isSerialHex(serial)) throw new Error(`bad serial ${serial}`);
    const magnitude = Buffer.from(serial, "hex");
    const fixed = Buffer.alloc(9);
    fixed.writeBigInt64BE(BigInt(Math.floor(revokedAtMs / 1000)));
    fixed[8] = reason ?? NO_REASON;
    parts.push(Buffer.of(magnitude.length), magnitude, fixed);
  }
  return { count: rows.length, lastSerial: rows.length > 0 ? (rows[rows.length - 1]![0] as SerialHex) : null, bytes: Buffer.concat(parts) };
}

/** The rows a page holds, seconds as ms (the inverse of packRevokedRows, for tests and tools). */
export function unpackRevokedPage(page: RevokedPage): RevokedRow[] {
  const b = Buffer.from(page.bytes.buffer, page.bytes.byteOffset, page.bytes.byteLength);
  const rows: RevokedRow[] = [];
  let o = 0;
  while (o < b.length) {
    const n = b[o]!;
    const serial = b.toString("hex", o + 1, o + 1 + n);
    const seconds = Number(b.readBigInt64BE(o + 1 + n));
    const reason = b[o + 1 + n + 8]!;
    rows.push([serial, seconds * 1000, reason === NO_REASON ? null : reason]);
    o += 1 + n + 9;
  }
  if (rows.length !== page.count) throw new Error(`page says ${page.count} entries, holds ${rows.length}`);
  return rows;
}
