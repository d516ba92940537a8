import { closeSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { fsyncDir, writeNewFileDurably } from "../core/atomic-file.js";

/** The symlink naming the current version directory, as in Kubernetes' AtomicWriter. */
export const DATA_LINK = "..data";
const DATA_TMP_PREFIX = "..data_tmp.";
/** The publishers' lock (see acquirePublishLock). */
const LOCK = "..lock";
/** A publication takes milliseconds; a publisher waits this long for another before it fails cleanly. */
const LOCK_WAIT_MS = 30_000;
/** A lock older than this is a publisher that died holding it (no publication lasts a minute). */
const STALE_LOCK_MS = 60_000;
/** Version directories are named `..<ISO time>-<random>`. */
const VERSION = /^\.\.\d{4}-/;

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
  const release = acquirePublishLock(dir);
  try {
    return publishLocked(dir, files, now);
  } finally {
    release();
  }
}

function publishLocked(dir: string, files: readonly PublishedFile[], now: Date): string {
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
  // A name of its own: a fixed temporary name is what two publishers used to trip over.
  const tmp = join(dir, `${DATA_TMP_PREFIX}${randomBytes(6).toString("hex")}`);
  symlinkSync(version, tmp);
  renameSync(tmp, join(dir, DATA_LINK));
  // Visible names point through ..data, so they never need to change once made.
  const names = new Set(files.map((f) => f.name));
  for (const f of files) {
    const visible = join(dir, f.name);
    const target = `${DATA_LINK}/${f.name}`;
    if (readlinkOrNull(visible) === target) continue;
    const t = join(dir, `.${f.name}.${randomBytes(4).toString("hex")}.tmp`);
    symlinkSync(target, t);
    renameSync(t, visible);
  }
  // A visible name the new set does not have (ocsp.der when there is no answer) would dangle.
  for (const n of readdirSync(dir)) {
    const target = readlinkOrNull(join(dir, n));
    if (target?.startsWith(`${DATA_LINK}/`) && !names.has(target.slice(DATA_LINK.length + 1)) && n === target.slice(DATA_LINK.length + 1)) {
      unlinkSync(join(dir, n));
    }
  }
  fsyncDir(dir);
  // Under the lock nothing else is being published, so every version other than the new one and
  // the one it replaced is a leftover (an older publication, or one that crashed before its swap),
  // as is any temporary link. The replaced one stays until retireSuperseded: a reader that resolved
  // ..data a moment before the swap may still be about to open a file in it (Kubernetes'
  // AtomicWriter deletes it at once and has exactly that window).
  let removed = false;
  for (const n of readdirSync(dir)) {
    const leftover = (VERSION.test(n) && n !== version && n !== old) || n.startsWith(DATA_TMP_PREFIX) || isVisibleLinkTemporary(dir, n);
    if (!leftover) continue;
    rmSync(join(dir, n), { recursive: true, force: true });
    removed = true;
  }
  if (removed) fsyncDir(dir);
  return version;
}

/**
 * A visible name's temporary link (`.NAME.RAND.tmp` -> ..data/NAME, made just before its rename
 * over NAME above) left by a publisher killed between the two calls. Recognised by its name's
 * shape and its target both, so nothing an operator put in the directory is taken for one.
 */
function isVisibleLinkTemporary(dir: string, n: string): boolean {
  const m = /^\.(.+)\.[0-9a-f]{8}\.tmp$/.exec(n);
  return m !== null && readlinkOrNull(join(dir, n)) === `${DATA_LINK}/${m[1]}`;
}

/**
 * Deletes every version directory but the live one (the one ..data names), under the publishers'
 * lock. Called a grace period after a publication, so the replaced set — its private key
 * included — does not stay on disk until the next renewal.
 */
export function retireSuperseded(dir: string): number {
  const release = acquirePublishLock(dir);
  try {
    const live = readlinkOrNull(join(dir, DATA_LINK));
    if (!live) return 0;
    let n = 0;
    for (const name of readdirSync(dir)) {
      if (!VERSION.test(name) || name === live) continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      n++;
    }
    if (n > 0) fsyncDir(dir);
    return n;
  } finally {
    release();
  }
}

/**
 * The publishers' lock: DIR/..lock created with O_EXCL (one winner), holding "pid host time".
 * Two publishers on one directory (`cert-agent --once` run while the long-running agent works)
 * take turns instead of swapping links under each other. Node has no flock(2), so a lock left by
 * a publisher that died is recognised instead: its pid is gone (same host), or it is older than
 * any publication can be (another host or PID namespace sharing the volume). Waiting is a sleep
 * of a few milliseconds at a time (Atomics.wait): publishSet stays synchronous, as its callers
 * and its atomicity argument expect.
 */
function acquirePublishLock(dir: string): () => void {
  const path = join(dir, LOCK);
  const deadline = Date.now() + LOCK_WAIT_MS;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      const fd = openSync(path, "wx", 0o600);
      try {
        writeSync(fd, `${process.pid} ${hostname()} ${Date.now()}\n`);
      } finally {
        closeSync(fd);
      }
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    if (lockIsStale(path)) {
      rmSync(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another publisher holds ${path} (waited ${LOCK_WAIT_MS / 1000} s)`);
    Atomics.wait(pause, 0, 0, 5);
  }
}

function lockIsStale(path: string): boolean {
  let text: string;
  let mtimeMs: number;
  try {
    text = readFileSync(path, "utf8");
    mtimeMs = statSync(path).mtimeMs;
  } catch {
    return false; // released meanwhile: try again
  }
  if (Date.now() - mtimeMs > STALE_LOCK_MS) return true;
  const [pid, host] = text.trim().split(" ");
  if (host !== hostname() || !pid) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH";
  }
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

