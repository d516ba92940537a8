import type { Clock } from "../../core/clock.js";
import type { Issuer } from "../../issuance/issuer.js";
import type { CrlStore, IssuerRecord, RevokedRow, StoredCrl } from "../../storage/ports.js";
import { parseCertificateDer } from "../../x509/certificate-info.js";
import { buildCrl } from "./crl-builder.js";
import { publishedFrom, type PublishedCrl } from "./crl-publisher.js";

/** The daemon warns this long before the root CRL's nextUpdate: time to run `fleetca crl sign-root`. */
export const ROOT_CRL_WARNING_MS = 7 * 24 * 3_600_000;

/**
 * Signs the root's CRL: the intermediates it issued that were revoked and have not expired
 * (empty until one is). Relying parties that check CRLs for the whole chain (nginx's `ssl_crl`,
 * OpenSSL's X509_V_FLAG_CRL_CHECK_ALL) need one from every CA in it. The daemon never holds the
 * root key, so this CRL is long-lived (crl.rootValidity) and is signed by the commands that
 * unwrap the root: `fleetca init` and `fleetca crl sign-root`.
 */
export async function signRootCrl(
  root: Issuer,
  issuers: readonly IssuerRecord[],
  store: Pick<CrlStore, "crlSummaryOf" | "saveCrl">,
  clock: Clock,
  validityMs: number,
): Promise<StoredCrl> {
  const now = Math.floor(clock.now().getTime() / 1000) * 1000;
  const thisUpdate = new Date(now);
  const nextUpdate = new Date(Math.min(now + validityMs, Math.floor(root.info.notAfter.getTime() / 1000) * 1000));
  const entries: RevokedRow[] = issuers
    .filter((i) => i.parentKeyId === root.keyIdHex && i.revokedAt !== null && i.notAfter > thisUpdate)
    .map((i): RevokedRow => [parseCertificateDer(i.der).info.serial, i.revokedAt!.getTime(), i.revocationReason])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const scope = { issuerKeyId: root.keyIdHex, shard: null };
  for (let attempt = 0; attempt < 3; attempt++) {
    const crlNumber = ((await store.crlSummaryOf(scope))?.crlNumber ?? 0) + 1;
    const built = await buildCrl(root, { crlNumber, thisUpdate, nextUpdate, distributionPointUrl: null }, (after, size) =>
      entries.filter((e) => after === null || e[0] > after).slice(0, size),
    );
    const state: StoredCrl = { ...scope, crlNumber, thisUpdate, nextUpdate, entries: built.entries, revocationSeq: -1, der: built.der };
    if (await store.saveCrl(state)) return state;
  }
  throw new Error("another writer kept storing a higher root CRL number");
}

/**
 * The daemon's view of a root CRL someone else signs: re-read from the store on every tick (so a
 * `fleetca crl sign-root` run elsewhere is served within a tick), judged by how close its
 * nextUpdate is.
 */
export class StoredRootCrl {
  #current: PublishedCrl | null = null;
  #refreshing: Promise<void> | null = null;

  constructor(
    readonly keyIdHex: string,
    private readonly store: Pick<CrlStore, "getCrl" | "crlSummaryOf">,
    private readonly clock: Clock,
  ) {}

  /** One read at a time: a refresh asked for while one runs joins it. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = null));
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const scope = { issuerKeyId: this.keyIdHex, shard: null };
    const n = (await this.store.crlSummaryOf(scope))?.crlNumber ?? null;
    if (n === null || (this.#current && n <= this.#current.crlNumber)) return;
    const s = await this.store.getCrl(scope);
    // The served number never goes back (RFC 5280 §5.2.3), whatever was read meanwhile.
    if (s && s.crlNumber > (this.#current?.crlNumber ?? 0)) this.#current = publishedFrom(s);
  }

  current(): PublishedCrl | null {
    return this.#current;
  }

  /** Past nextUpdate is an error (chains stop verifying where CRLs are checked); close to it, or none, a warning. */
  problems(): { errors: string[]; warnings: string[] } {
    const cur = this.#current;
    const name = `root CRL of ${this.keyIdHex}`;
    if (!cur) return { errors: [], warnings: [`${name}: none signed; run "fleetca crl sign-root"`] };
    const left = cur.nextUpdate.getTime() - this.clock.now().getTime();
    if (left <= 0) return { errors: [`${name}: past its nextUpdate ${cur.nextUpdate.toISOString()}; run "fleetca crl sign-root"`], warnings: [] };
    if (left <= ROOT_CRL_WARNING_MS) {
      return { errors: [], warnings: [`${name}: nextUpdate ${cur.nextUpdate.toISOString()} is within 7 days; run "fleetca crl sign-root"`] };
    }
    return { errors: [], warnings: [] };
  }
}
