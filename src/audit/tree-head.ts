import { createHash, createPublicKey, verify as cryptoVerify } from "node:crypto";
import type { Signer } from "../signing/signer.js";

/**
 * A signed tree head: the log's size, its Merkle root and the time, signed by the audit key
 * (ECDSA P-256 with SHA-256, DER signature). What is signed is one line of ASCII, so a monitor
 * checks it with `openssl dgst -sha256 -verify` or three lines of Python:
 *
 *   fleetca-tree-head/1 <tree_size> <root hash, lowercase hex> <timestamp, unix ms>
 *
 * RFC 9162 §4.10 signs a binary TreeHeadSignature; a text line carries the same three values and
 * needs no TLS-presentation-language decoder to check.
 */
export interface TreeHead {
  treeSize: number;
  rootHash: Uint8Array;
  timestamp: number;
}

export function treeHeadSignedBytes(h: TreeHead): Buffer {
  return Buffer.from(`fleetca-tree-head/1 ${h.treeSize} ${Buffer.from(h.rootHash).toString("hex")} ${h.timestamp}`, "ascii");
}

export async function signTreeHead(signer: Signer, h: TreeHead): Promise<Buffer> {
  return Buffer.from(await signer.sign(treeHeadSignedBytes(h)));
}

export function verifyTreeHead(spki: Uint8Array, h: TreeHead, signature: Uint8Array): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
    return cryptoVerify("sha256", treeHeadSignedBytes(h), { key, dsaEncoding: "der" }, signature);
  } catch {
    return false;
  }
}

export function spkiSha256(spki: Uint8Array): string {
  return createHash("sha256").update(spki).digest("hex");
}

/**
 * A signed tree head as `GET /v1/audit/tree-head` and `fleetca audit prove` print it: the signed
 * line itself, so a monitor verifies exactly these bytes, and the key that signed it.
 */
export interface TreeHeadJson {
  tree_size: number;
  root_hash: string;
  timestamp: number;
  time: string;
  signed: string;
  signature: string;
  key: { name: string; spki: string; spki_sha256: string };
}

export function treeHeadJson(h: TreeHead & { keyName: string; keySpki: Uint8Array; signature: Uint8Array }): TreeHeadJson {
  return {
    tree_size: h.treeSize,
    root_hash: Buffer.from(h.rootHash).toString("hex"),
    timestamp: h.timestamp,
    time: new Date(h.timestamp).toISOString(),
    signed: treeHeadSignedBytes(h).toString("ascii"),
    signature: Buffer.from(h.signature).toString("base64"),
    key: { name: h.keyName, spki: Buffer.from(h.keySpki).toString("base64"), spki_sha256: spkiSha256(h.keySpki) },
  };
}
