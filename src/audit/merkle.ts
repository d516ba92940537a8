import { createHash } from "node:crypto";

/**
 * The Merkle tree of RFC 9162 §2.1 (Certificate Transparency 2.0), with SHA-256:
 *
 *   MTH({})        = SHA-256()
 *   MTH({d(0)})    = SHA-256(0x00 || d(0))                      (leaf hash)
 *   MTH(D[n])      = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (k: largest power of 2 < n)
 *
 * The 0x00 / 0x01 prefixes keep a leaf from ever hashing like an inner node (second-preimage
 * protection, §2.1.1). Proofs follow §2.1.3 (inclusion: PATH) and §2.1.4 (consistency: PROOF),
 * and their verifiers the algorithms of §2.1.3.2 and §2.1.4.2, so any CT tooling checks them.
 */
export const HASH_SIZE = 32;

export function leafHash(entry: Uint8Array): Buffer<ArrayBufferLike> {
  return createHash("sha256").update(LEAF_PREFIX).update(entry).digest();
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer<ArrayBufferLike> {
  return createHash("sha256").update(NODE_PREFIX).update(left).update(right).digest();
}

export const EMPTY_ROOT: Buffer<ArrayBufferLike> = createHash("sha256").digest();

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** The largest power of two strictly smaller than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * MTH over leaves [from, to) of a list of leaf hashes. Iterative: the tree of RFC 9162 is the
 * left-to-right merge of perfect subtrees, so a stack of (size, hash) folds it in O(n) without
 * recursion depth (a log of millions of entries).
 */
export function rootOf(leaves: readonly Uint8Array[], from = 0, to = leaves.length): Buffer<ArrayBufferLike> {
  if (to <= from) return EMPTY_ROOT;
  const f = new MerkleFrontier();
  for (let i = from; i < to; i++) f.push(leaves[i]!);
  return f.root();
}

/**
 * The right edge of a growing tree: one hash per perfect subtree (the binary digits of the
 * size). Appending is O(log n), the root O(log n): what lets the daemon sign a tree head every
 * minute over millions of entries without rereading them.
 */
export class MerkleFrontier {
  /** Perfect subtree roots, largest (leftmost) first, with their sizes. */
  #hashes: Buffer<ArrayBufferLike>[] = [];
  #sizes: number[] = [];
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(leaf: Uint8Array): void {
    let h: Buffer<ArrayBufferLike> = Buffer.from(leaf);
    let s = 1;
    while (this.#sizes.length > 0 && this.#sizes[this.#sizes.length - 1] === s) {
      h = nodeHash(this.#hashes.pop()!, h);
      this.#sizes.pop();
      s *= 2;
    }
    this.#hashes.push(h);
    this.#sizes.push(s);
    this.#size++;
  }

  root(): Buffer<ArrayBufferLike> {
    if (this.#hashes.length === 0) return EMPTY_ROOT;
    // The unbalanced right part folds right to left: MTH splits at the largest power of two, so
    // the rightmost (smallest) subtrees join first.
    let h = this.#hashes[this.#hashes.length - 1]!;
    for (let i = this.#hashes.length - 2; i >= 0; i--) h = nodeHash(this.#hashes[i]!, h);
    return h;
  }
}

/** PATH(m, D[n]) of RFC 9162 §2.1.3.1: the audit path for leaf m in the tree of the first n leaves. */
export function inclusionProof(leaves: readonly Uint8Array[], m: number, n: number): Buffer[] {
  if (!(n <= leaves.length && m >= 0 && m < n)) throw new RangeError(`no leaf ${m} in a tree of ${n}`);
  const path = (m: number, from: number, to: number): Buffer[] => {
    const size = to - from;
    if (size === 1) return [];
    const k = splitPoint(size);
    return m < k ? [...path(m, from, from + k), rootOf(leaves, from + k, to)] : [...path(m - k, from + k, to), rootOf(leaves, from, from + k)];
  };
  return path(m, 0, n);
}

/** PROOF(m, D[n]) of RFC 9162 §2.1.4.1: proves the tree of the first m leaves is a prefix of the one of n. */
export function consistencyProof(leaves: readonly Uint8Array[], m: number, n: number): Buffer[] {
  if (!(n <= leaves.length && m > 0 && m <= n)) throw new RangeError(`no consistency proof from ${m} to ${n}`);
  const subproof = (m: number, from: number, to: number, complete: boolean): Buffer[] => {
    const size = to - from;
    if (m === size) return complete ? [] : [rootOf(leaves, from, to)];
    const k = splitPoint(size);
    return m <= k
      ? [...subproof(m, from, from + k, complete), rootOf(leaves, from + k, to)]
      : [...subproof(m - k, from + k, to, false), rootOf(leaves, from, from + k)];
  };
  return subproof(m, 0, n, true);
}

/** RFC 9162 §2.1.3.2: does `path` prove `leaf` is entry `index` of the tree of `size` with `root`? */
export function verifyInclusion(leaf: Uint8Array, index: number, size: number, path: readonly Uint8Array[], root: Uint8Array): boolean {
  if (index >= size || index < 0) return false;
  let fn = index;
  let sn = size - 1;
  let r: Buffer<ArrayBufferLike> = Buffer.from(leaf);
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree (size1, root1) is a prefix of (size2, root2)? */
export function verifyConsistency(size1: number, size2: number, proof: readonly Uint8Array[], root1: Uint8Array, root2: Uint8Array): boolean {
  if (size1 < 1 || size2 < size1) return false;
  if (size1 === size2) return proof.length === 0 && Buffer.from(root1).equals(root2);
  if (proof.length === 0) return false;
  let path = [...proof];
  // A first tree that is a perfect subtree is its own first node.
  if ((size1 & (size1 - 1)) === 0) path = [Buffer.from(root1), ...path];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer<ArrayBufferLike> = Buffer.from(path[0]!);
  let sr: Buffer<ArrayBufferLike> = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(root1) && sr.equals(root2);
}
