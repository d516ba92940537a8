import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";

/**
 * Writes a file so a reader sees the old content or the new, never a torn one (DESIGN habit 9):
 * temp file in the same directory (same filesystem, so rename is atomic), fsync, rename,
 * fsync the directory so the rename itself survives a crash.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    writeNewFileDurably(tmp, data, mode);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

/**
 * Creates `path` (refusing to overwrite: "wx"), writes all of `data` and fsyncs it before closing,
 * so once this returns the bytes are on disk. The building block of every atomic publication.
 */
export function writeNewFileDurably(path: string, data: string | Uint8Array, mode: number): void {
  const fd = openSync(path, "wx", mode);
  try {
    const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
