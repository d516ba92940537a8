import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync, fsyncSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { OperatorError } from "../core/errors.js";
import { splitHostPort } from "../api/listener.js";

export const SERVE_LOCK_FILE = "serve.lock";

/**
 * One `fleetca serve` per dataDir (issue 16): a second one used to mint an API serving
 * certificate before failing on the port, leaving live `fleetca-api` certificates nobody served.
 * `dataDir/serve.lock` is created exclusively (O_EXCL) with the holder's pid; a lock whose pid
 * is no longer running (kill -9, a power cut) is taken over. A lock held by this very process is
 * taken over too: that is a daemon restarted in-process, whose predecessor is gone with its
 * listeners (the test harness does this).
 */
export function acquireServeLock(dataDir: string): { release(): void } {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, SERVE_LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, "wx", 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const holder = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
        throw new OperatorError(`another fleetca serve (pid ${holder}) is running on ${dataDir}; stop it first (or remove ${path} if that process is not fleetca)`);
      }
      rmSync(path, { force: true }); // stale: its holder is gone
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    fsyncSync(fd);
    closeSync(fd);
    return {
      release: () => {
        try {
          if (Number.parseInt(readFileSync(path, "utf8"), 10) === process.pid) rmSync(path, { force: true });
        } catch {
          // already gone
        }
      },
    };
  }
  throw new OperatorError(`cannot take ${path}: another fleetca serve is starting on ${dataDir}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Fails with a one-line error naming the config key when a configured listener address is
 * already taken, before anything is initialised or minted (port 0 is always free).
 */
export async function assertPortsFree(listeners: Array<[key: string, addr: string | undefined]>): Promise<void> {
  for (const [key, addr] of listeners) {
    if (!addr) continue;
    const [host, port] = splitHostPort(addr);
    if (port === 0) continue;
    await new Promise<void>((resolve, reject) => {
      const probe = createServer();
      probe.once("error", (e: NodeJS.ErrnoException) =>
        reject(new OperatorError(`${key} ${addr}: ${e.code === "EADDRINUSE" ? "already in use (another process listens there)" : (e.code ?? e.message)}`)),
      );
      probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
    });
  }
}
