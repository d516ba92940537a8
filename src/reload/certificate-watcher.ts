import { EventEmitter } from "node:events";
import { readlinkSync } from "node:fs";
import { Agent as HttpsAgent, type AgentOptions } from "node:https";
import { basename, join } from "node:path";
import type { SecureContextOptions, Server as TlsServer } from "node:tls";
import { watch, type FSWatcher } from "chokidar";
import { freshStaple, readCredentialSet, RejectedSet, type CredentialSet } from "./credential-set.js";

export interface WatchOptions {
  /**
   * Everything a secure context needs besides key and cert (minVersion, ciphers, …), given again
   * on every swap: `setSecureContext` replaces the whole context, not just the key pair.
   */
  secureContext?: SecureContextOptions;
  /** Trust ca.pem (the agent's pinned roots) to verify peers: mTLS clients on a server, servers in `agent()`. Default true. */
  trustBundle?: boolean;
  /**
   * Besides file events, look at `..data` this often: a missed event (an overlay filesystem, a
   * directory replaced under the watch) then costs at most this much delay. Default 30 s.
   */
  pollMs?: number;
  /** The time the validity and OCSP windows are judged by; the system clock unless a test injects one. */
  now?: () => Date;
}

export interface ReloadedEvent {
  serial: string;
  version: string;
  notAfter: Date;
  stapling: boolean;
}

export interface RejectedEvent {
  version: string | null;
  reason: string;
}

/** Coalesces a burst of file events (a publication renames several links) into one read. */
const SETTLE_MS = 25;

/**
 * Follows the directory cert-agent publishes to and hands its sets to TLS servers and clients,
 * the piece between "a fresh certificate on disk" and "a running service uses it":
 *
 * - reads each published set once, through the `..data` link (so never half of two sets), and
 *   only takes it when key and certificate match and the chain verifies to the bundle;
 * - swaps it into every attached server with `setSecureContext`: connections already open keep
 *   the certificate they were established with, new ones get the new one, nothing is dropped;
 * - a set that fails its checks is reported (`rejected`) and ignored: servers keep the last good
 *   one, as a sidecar must rather than serve nothing;
 * - staples the set's OCSP answer (`OCSPRequest`) while its validity window holds;
 * - `agent()` gives mTLS clients an https.Agent whose new connections present the current set.
 *
 * Events: `reloaded` (ReloadedEvent), `rejected` (RejectedEvent), `error` (a watcher failure).
 */
export class CertificateWatcher extends EventEmitter {
  #set: CredentialSet;
  #rejectedVersion: string | null = null;
  readonly #servers = new Set<TlsServer>();
  readonly #watcher: FSWatcher;
  readonly #poll: NodeJS.Timeout;
  #settle: NodeJS.Timeout | null = null;
  #closed = false;

  private constructor(
    readonly dir: string,
    private readonly opts: WatchOptions,
    first: CredentialSet,
  ) {
    super();
    this.#set = first;
    // The directory itself, one level: `..data` is a symlink swapped by rename(2), so its events
    // arrive as add/change/unlink of that name; following it would watch a directory that goes away.
    this.#watcher = watch(dir, { depth: 0, ignoreInitial: true, followSymlinks: false, persistent: false });
    this.#watcher.on("all", (_event, path) => {
      if (basename(path) === "..data") this.#schedule();
    });
    this.#watcher.on("error", (e) => this.emit("error", e));
    this.#poll = setInterval(() => this.check(), opts.pollMs ?? 30_000);
    this.#poll.unref();
  }

  /**
   * Opens the watch on `dir` and reads its current set; throws (RejectedSet) when there is no
   * valid set yet, so a service does not start without a certificate.
   */
  static open(dir: string, opts: WatchOptions = {}): CertificateWatcher {
    return new CertificateWatcher(dir, opts, readCredentialSet(dir, (opts.now ?? (() => new Date()))()));
  }

  get current(): CredentialSet {
    return this.#set;
  }

  /** Options for `https.createServer` / `tls.createServer` / `http2.createSecureServer` (add your own around them). */
  serverOptions(): SecureContextOptions {
    const s = this.#set;
    return { ...this.opts.secureContext, key: s.keyPem, cert: s.certChainPem, ...(this.opts.trustBundle !== false && { ca: s.caPem }) };
  }

  /** Options for `tls.connect` / `https.request`: the current client certificate, and the bundle to trust the server by. */
  clientOptions(): { key: string; cert: string; ca?: string } {
    const s = this.#set;
    return { key: s.keyPem, cert: s.certChainPem, ...(this.opts.trustBundle !== false && { ca: s.caPem }) };
  }

  /** Starts swapping new sets into `server` and stapling OCSP on it. */
  attach(server: TlsServer): this {
    this.#servers.add(server);
    server.on("OCSPRequest", (_cert: Buffer, _issuer: Buffer, cb: (err: Error | null, resp?: Buffer) => void) => {
      cb(null, freshStaple(this.#set, this.#now()));
    });
    server.once("close", () => this.#servers.delete(server));
    return this;
  }

  /**
   * An https.Agent for mTLS clients: keep-alive connections stay on the set they were opened with;
   * a connection opened after a reload presents the new certificate. The set's version is part of
   * the agent's pool name, so neither an idle socket nor a cached TLS session of the old
   * certificate is reused for it.
   */
  agent(options: AgentOptions = {}): HttpsAgent {
    return new FollowingAgent(this, { keepAlive: true, ...options });
  }

  /** Looks at `..data` now and takes a new set if there is one (the file events and the poll call this). */
  check(): void {
    if (this.#closed) return;
    let version: string;
    try {
      version = readlinkSync(join(this.dir, "..data"));
    } catch {
      return; // nothing published (or the link is being replaced): keep the last good set
    }
    if (version === this.#set.version || version === this.#rejectedVersion) return;
    let next: CredentialSet;
    try {
      next = readCredentialSet(this.dir, this.#now());
    } catch (e) {
      if (!(e instanceof RejectedSet)) throw e;
      this.#rejectedVersion = version;
      this.emit("rejected", { version, reason: e.message } satisfies RejectedEvent);
      return;
    }
    this.#set = next;
    this.#rejectedVersion = null;
    for (const server of this.#servers) server.setSecureContext(this.serverOptions());
    this.emit("reloaded", { serial: next.serial, version: next.version, notAfter: next.notAfter, stapling: next.ocsp !== null } satisfies ReloadedEvent);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#poll);
    if (this.#settle) clearTimeout(this.#settle);
    await this.#watcher.close();
  }

  #schedule(): void {
    if (this.#settle) return;
    this.#settle = setTimeout(() => {
      this.#settle = null;
      try {
        this.check();
      } catch (e) {
        this.emit("error", e);
      }
    }, SETTLE_MS);
    this.#settle.unref();
  }

  #now(): Date {
    return (this.opts.now ?? (() => new Date()))();
  }
}

class FollowingAgent extends HttpsAgent {
  constructor(
    private readonly watcher: CertificateWatcher,
    options: AgentOptions,
  ) {
    super(options);
  }

  // node's http.Agent calls createConnection(options, callback) with the request's TLS options.
  override createConnection(options: Record<string, unknown>, ...rest: unknown[]): ReturnType<HttpsAgent["createConnection"]> {
    const create = HttpsAgent.prototype.createConnection as (this: HttpsAgent, ...args: unknown[]) => ReturnType<HttpsAgent["createConnection"]>;
    return create.call(this, { ...options, ...this.watcher.clientOptions() }, ...rest);
  }

  override getName(options?: Parameters<HttpsAgent["getName"]>[0]): string {
    return `${super.getName(options)}:${this.watcher.current.version}`;
  }
}
