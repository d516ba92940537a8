import { Router, type Request, type Response } from "express";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { CaError } from "../core/errors.js";
import type { PublishedCrl } from "../revocation/crl/crl-publisher.js";
import type { CrlScope, CrlSnapshot, StoredCrlHead } from "../storage/ports.js";

/** DER octets per write of /crls.pem from memory: a multiple of 48, so every slice ends on a whole 64-character line. */
const PEM_SLICE = 48 * 1024;
/** DER octets per PEM line (64 base64 characters). */
const PEM_LINE_OCTETS = 48;

/**
 * How long a streamed response may keep its snapshot of the store (see CrlSnapshot): the bound
 * node puts on receiving a request (listener.ts requestTimeout), which covers any CRL a client
 * reads at 1.5 MB/s or more. A slower client goes on after it, reading the same CRL by its write,
 * and is cut off only if a newer CRL is stored and the old chunks are swept before it is done.
 */
export const CRL_SNAPSHOT_MS = 30_000;
/** A client that reads nothing of a streamed CRL for this long is disconnected (as above). */
export const CRL_STALL_MS = 30_000;

/**
 * A CRL kept in storage and streamed per request (a public worker's large CRLs, crl-mirror.ts):
 * what the headers need, and the scope to read it from.
 */
export interface StreamedCrl {
  scope: CrlScope;
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Octets of its DER. */
  length: number;
}

/** A CRL as a source hands it: in memory, or in storage to be streamed. */
export type ServedCrl = PublishedCrl | StreamedCrl;

/** What the CRL routes read: signed-ahead CRLs in memory (DESIGN habit 8), or in the store. */
export interface CrlSource {
  currentCrl(): ServedCrl | undefined;
  knows(keyIdHex: string, shard: number | null): boolean;
  /** Undefined when the scope is unknown or has no CRL yet. */
  crlFor(keyIdHex: string, shard: number | null): ServedCrl | undefined;
  all(): ServedCrl[];
  /** Where StreamedCrls are read from; needed by a source that hands any out. */
  openSnapshot?(): Promise<CrlSnapshot>;
}

export interface CrlRouterOptions {
  intervalMs: number;
  log?: Logger;
  /** Tests shorten these; see CRL_SNAPSHOT_MS and CRL_STALL_MS. */
  snapshotMs?: number;
  stallMs?: number;
}

/**
 * GET /crl (the current intermediate's full CRL), /crl/<issuer-key-id-hex> (any issuer's, roots
 * included: the URL every certificate's CRL distribution point names, RFC 5280 §4.2.1.13),
 * /crl/<issuer-key-id-hex>/<shard> (one partition), all DER `application/pkix-crl` (RFC 2585
 * §4.2); and /crls.pem, every current CRL as one PEM bundle, the shape nginx's `ssl_crl` and
 * HAProxy's `crl-file` take. HEAD is answered by the same routes (express), without a body.
 */
export function createCrlRouter(source: CrlSource, clock: Clock, opts: CrlRouterOptions): Router {
  const router = Router();
  const limits = { snapshotMs: opts.snapshotMs ?? CRL_SNAPSHOT_MS, stallMs: opts.stallMs ?? CRL_STALL_MS, log: opts.log };

  router.get("/crl", (req, res) => sendCrl(req, res, source, published(source.currentCrl(), "the current intermediate"), clock, opts.intervalMs, limits));

  router.get(["/crl/:keyId", "/crl/:keyId/:shard"], async (req, res) => {
    const keyId = String(req.params.keyId).toLowerCase();
    const shardText = req.params.shard as string | undefined;
    const shard = shardText === undefined ? null : /^(0|[1-9]\d{0,5})$/.test(shardText) ? Number(shardText) : -1;
    const name = `${String(req.params.keyId).slice(0, 130)}${shardText === undefined ? "" : `/${shardText.slice(0, 10)}`}`;
    if (!/^[0-9a-f]{2,128}$/.test(keyId) || shard === -1 || !source.knows(keyId, shard)) throw new CaError("not_found", `no CRL ${name}`);
    await sendCrl(req, res, source, published(source.crlFor(keyId, shard), name), clock, opts.intervalMs, limits);
  });

  router.get("/crls.pem", async (req, res) => {
    const crls = source.all();
    res.set("Cache-Control", "no-cache").type("application/x-pem-file");
    if (req.method === "HEAD") return void res.end();
    // Streamed, 48 KiB of DER (64 KiB of base64 lines) at a time: a bundle with a million-entry
    // CRL is ~55 MB of PEM, which must not become one string per request; a CRL kept in the
    // store is read a stored chunk at a time, all of them from one snapshot.
    const snapshot = crls.some(isStreamed) ? await openSnapshot(source, limits.log) : null;
    const parts: ChunkSource[] = [];
    try {
      for (const c of crls) {
        if (!isStreamed(c)) {
          parts.push(memoryChunks(c.der, PEM_SLICE));
          continue;
        }
        const head = await snapshot!.head(c.scope);
        // Every scope the mirror names was stored (a crls row is never deleted).
        if (!head) throw new Error(`CRL of ${c.scope.issuerKeyId}/${c.scope.shard ?? "full"} is no longer stored`);
        const reader = snapshot!.reader(head);
        parts.push(() => reader.next());
      }
    } catch (err) {
      await closeSnapshot(snapshot, limits.log);
      throw err;
    }
    pump(res, pemParts(parts), snapshot, limits);
  });

  return router;
}

function isStreamed(c: ServedCrl): c is StreamedCrl {
  return !("der" in c);
}

function published(crl: ServedCrl | undefined, name: string): ServedCrl {
  // Only a scope whose first CRL could not be signed has none: /healthz says why.
  if (!crl) throw new CaError("unavailable", `no CRL published yet for ${name}`);
  return crl;
}

/** The source's snapshot, its calls queued one after another (see oneCallAtATime). */
async function openSnapshot(source: CrlSource, log: Logger | undefined): Promise<CrlSnapshot> {
  if (!source.openSnapshot) throw new Error("a CRL source handed out a streamed CRL without a store to read it from");
  try {
    return oneCallAtATime(await source.openSnapshot());
  } catch (err) {
    log?.error({ err }, "cannot open the CRL store to stream a CRL");
    throw new CaError("unavailable", "the CRL store cannot be read now");
  }
}

/**
 * The snapshot with each call started only once the previous one settled: the release timer and
 * a client that goes away (close) fire whenever they fire, possibly while a chunk is being read,
 * and a snapshot's calls must not overlap (ports.ts CrlSnapshot: over PostgreSQL they share one
 * connection, and a COMMIT must not land in the middle of a read).
 */
function oneCallAtATime(snapshot: CrlSnapshot): CrlSnapshot {
  let tail: Promise<unknown> = Promise.resolve();
  const queued = <T>(call: () => Promise<T>): Promise<T> => {
    const r = tail.then(call);
    tail = r.catch(() => {});
    return r;
  };
  return {
    head: (scope) => queued(() => snapshot.head(scope)),
    reader: (head) => {
      const r = snapshot.reader(head);
      return { next: () => queued(() => r.next()) };
    },
    release: () => queued(() => snapshot.release()),
    close: () => queued(() => snapshot.close()),
  };
}

/** Closes a snapshot on a path that has something else to report (or nothing): a failure to close is only logged. */
async function closeSnapshot(snapshot: CrlSnapshot | null, log: Logger | undefined): Promise<void> {
  try {
    await snapshot?.close();
  } catch (err) {
    log?.error({ err }, "closing a CRL snapshot failed");
  }
}

/**
 * Caches may keep a CRL until its nextUpdate, but no longer than the interval: a fresher one
 * (with any revocation of the last interval) is published by then. The ETag is the CRL number,
 * which names the content exactly; a matching If-None-Match (or an If-Modified-Since not before
 * thisUpdate) gets 304 (express's req.fresh, RFC 9110 §13.1).
 */
async function sendCrl(req: Request, res: Response, source: CrlSource, crl: ServedCrl, clock: Clock, intervalMs: number, limits: PumpLimits): Promise<void> {
  if (!isStreamed(crl)) {
    cacheHeaders(res, crl, clock, intervalMs);
    res.type("application/pkix-crl").send(Buffer.from(crl.der.buffer, crl.der.byteOffset, crl.der.byteLength));
    return;
  }
  // One snapshot for the headers and every octet: the CRL sent is the one the headers name, the
  // store's current one for the scope (at least as new as the mirror's, which trails by ≤ 1 s).
  const snapshot = await openSnapshot(source, limits.log);
  let head: StoredCrlHead | null;
  try {
    head = await snapshot.head(crl.scope);
    if (!head) throw new Error(`CRL of ${crl.scope.issuerKeyId}/${crl.scope.shard ?? "full"} is no longer stored`);
  } catch (err) {
    await closeSnapshot(snapshot, limits.log);
    throw err;
  }
  cacheHeaders(res, head, clock, intervalMs);
  res.type("application/pkix-crl");
  if (req.fresh) {
    await closeSnapshot(snapshot, limits.log);
    return void res.status(304).end();
  }
  res.set("Content-Length", String(head.derLength));
  if (req.method === "HEAD") {
    await closeSnapshot(snapshot, limits.log);
    return void res.end();
  }
  const reader = snapshot.reader(head);
  pump(res, singleParts(() => reader.next()), snapshot, limits);
}

function cacheHeaders(res: Response, crl: { crlNumber: number; thisUpdate: Date; nextUpdate: Date }, clock: Clock, intervalMs: number): void {
  const untilNext = Math.floor((crl.nextUpdate.getTime() - clock.now().getTime()) / 1000);
  const maxAge = Math.max(0, Math.min(untilNext, Math.floor(intervalMs / 1000)));
  res
    .set("Cache-Control", `public, max-age=${maxAge}`)
    .set("Last-Modified", crl.thisUpdate.toUTCString())
    .set("ETag", `"${crl.crlNumber}"`);
}

/** A CRL's DER in order, a piece per call; null after the last. From memory at once, from a store as a promise. */
type ChunkSource = () => Uint8Array | null | Promise<Uint8Array | null>;

function memoryChunks(der: Uint8Array, size: number): ChunkSource {
  let at = 0;
  return () => {
    if (at >= der.length) return null;
    const end = Math.min(at + size, der.length);
    const piece = Buffer.from(der.buffer, der.byteOffset + at, end - at);
    at = end;
    return piece;
  };
}

async function* singleParts(next: ChunkSource): AsyncGenerator<Uint8Array> {
  for (let c = await next(); c !== null; c = await next()) yield c;
}

/** Each CRL as one PEM block (RFC 7468 §5), 64-character lines, whatever the chunk sizes. */
async function* pemParts(sources: readonly ChunkSource[]): AsyncGenerator<string> {
  for (const next of sources) {
    yield "-----BEGIN X509 CRL-----\n";
    // Octets short of a whole line wait for the next chunk (a stored chunk is 128 KiB, not a multiple of 48).
    let carry: Buffer = Buffer.alloc(0);
    for (let c = await next(); c !== null; c = await next()) {
      const chunk = Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      const data = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
      const whole = data.length - (data.length % PEM_LINE_OCTETS);
      if (whole > 0) yield data.subarray(0, whole).toString("base64").replace(/.{64}/g, "$&\n");
      carry = data.subarray(whole);
    }
    yield `${carry.length > 0 ? `${carry.toString("base64")}\n` : ""}-----END X509 CRL-----\n`;
  }
}

interface PumpLimits {
  snapshotMs: number;
  stallMs: number;
  log: Logger | undefined;
}

/**
 * Writes `parts` as the client takes them: the next part only once the socket has drained the
 * last, so a response holds about one chunk in memory however large the CRL and however slow the
 * client. The snapshot is released after `snapshotMs` (the reads go on by write, see
 * CrlSnapshot) and closed when the response ends, fails or the client goes away; a client that
 * takes nothing for `stallMs` is disconnected. An error once the body has begun (the CRL swept
 * under a slow client after its snapshot was released) can only end the connection: the client
 * sees fewer octets than Content-Length, a failed download, never a mix of two CRLs. The parts
 * are read one at a time (each read awaited before the next), so a snapshot sees one read at a
 * time; the timer's release and the final close are queued behind the read under way
 * (oneCallAtATime).
 */
function pump(res: Response, parts: AsyncIterator<string | Uint8Array>, snapshot: CrlSnapshot | null, limits: PumpLimits): void {
  let finished = false;
  let stall: NodeJS.Timeout | undefined;
  const release = snapshot
    ? setTimeout(() => void snapshot.release().catch((err: unknown) => limits.log?.error({ err }, "releasing a CRL snapshot failed")), limits.snapshotMs)
    : undefined;
  release?.unref();
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(stall);
    clearTimeout(release);
    void closeSnapshot(snapshot, limits.log);
  };
  res.once("close", finish);
  const step = async (): Promise<void> => {
    clearTimeout(stall);
    try {
      for (;;) {
        if (res.destroyed) return finish();
        const r = await parts.next();
        // The client may have gone while the part was read.
        if (res.destroyed) return finish();
        if (r.done) {
          res.end();
          return finish();
        }
        if (!res.write(r.value)) {
          stall = setTimeout(() => res.destroy(), limits.stallMs);
          stall.unref();
          res.once("drain", () => void step());
          return;
        }
      }
    } catch (err) {
      limits.log?.warn({ err, path: res.req.url }, "a CRL download was cut off");
      res.destroy();
      finish();
    }
  };
  void step();
}
