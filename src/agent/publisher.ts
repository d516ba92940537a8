import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { fsyncDir, writeNewFileDurably } from "../core/atomic-file.js";

/** The symlink naming the current version directory, as in Kubernetes' AtomicWriter. */
export const DATA_LINK = "..data";
const DATA_TMP = "..data_tmp";

export interface PublishedFile {
  name: string;
  data: string | Uint8Array;
  mode: number;
}

function readlinkOrNull(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

/**
 * Publishes a SET of files so that a reader at any instant sees the whole old set or the whole
 * new set (DESIGN habit 9), never a key beside a cert it does not match. One rename(2) can only
 * replace one name, so the set lives in a versioned directory and the only thing swapped is a
 * symlink to it (the Kubernetes AtomicWriter scheme):
 *
 *   DIR/..<ts>-<rand>/{key.pem,cert.pem,…}   new version, every file and the dir fsynced
 *   DIR/..data_tmp -> ..<ts>-<rand>           then rename(..data_tmp, ..data): atomic (POSIX rename)
 *   DIR/key.pem -> ..data/key.pem             visible names, made once, never change
 *
 * A reader opening DIR/key.pem resolves ..data at open time; it must read the pair through one
 * resolution of ..data (see readCurrentSet) to be immune to a swap between its two opens. The old
 * version is deleted one publication later (see below); a file already open stays readable anyway.
 */
export function publishSet(dir: string, files: readonly PublishedFile[], now: Date): string {
  // Directories 0755: a sidecar (nginx, envoy) often runs as another user and must read the
  // public files (cert, chain, ca, ocsp.der); key.pem alone is 0600 (SPEC).
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const version = `..${now.toISOString().replace(/[:.]/g, "_")}-${randomBytes(4).toString("hex")}`;
  const vdir = join(dir, version);
  mkdirSync(vdir, { mode: 0o755 });
  try {
    for (const f of files) writeNewFileDurably(join(vdir, f.name), f.data, f.mode);
    fsyncDir(vdir);
  } catch (e) {
    rmSync(vdir, { recursive: true, force: true });
    throw e;
  }
  const old = readlinkOrNull(join(dir, DATA_LINK));
  const tmp = join(dir, DATA_TMP);
  rmSync(tmp, { force: true });
  symlinkSync(version, tmp);
  renameSync(tmp, join(dir, DATA_LINK));
  // Visible names point through ..data, so they never need to change once made.
  for (const f of files) {
    const visible = join(dir, f.name);
    const target = `${DATA_LINK}/${f.name}`;
    if (readlinkOrNull(visible) === target) continue;
    const t = join(dir, `.${f.name}.${randomBytes(4).toString("hex")}.tmp`);
    symlinkSync(target, t);
    renameSync(t, visible);
  }
  fsyncDir(dir);
  // Remove superseded versions, but keep the one just replaced: a reader that resolved ..data a
  // moment before the swap may still be about to open a file in it (Kubernetes' AtomicWriter deletes
  // it at once and has exactly that window). It goes at the next publication.
  let removed = false;
  for (const n of readdirSync(dir)) {
    if (n === version || n === old || n === DATA_LINK || !/^\.\.\d{4}-/.test(n)) continue;
    rmSync(join(dir, n), { recursive: true, force: true });
    removed = true;
  }
  if (removed) fsyncDir(dir);
  return version;
}

/** The files of the currently published set, read through ONE resolution of ..data. */
export function readCurrentSet(dir: string, names: readonly string[]): Record<string, Buffer | undefined> | null {
  const version = readlinkOrNull(join(dir, DATA_LINK));
  if (!version) return null;
  const out: Record<string, Buffer | undefined> = {};
  for (const n of names) {
    try {
      out[n] = readFileSync(join(dir, version, n));
    } catch {
      out[n] = undefined;
    }
  }
  return out;
}

/** True when DIR holds no published set (nothing to clean up after a refusal). */
export function hasPublishedSet(dir: string): boolean {
  try {
    lstatSync(join(dir, DATA_LINK));
    return true;
  } catch {
    return false;
  }
}

