import type Database from "better-sqlite3";
import type { SerialHex } from "../../core/serial.js";
import type {
  CertificateStatus,
  RenewalSelectorKind,
  RenewalSubject,
  RenewalWindowOverride,
  RenewalWindowStore,
} from "../ports.js";

/** The certificate's columns renewal info reads, by primary key (never the DER or the SANs JSON). */
export const RENEWAL_SUBJECT_SQL =
  "SELECT serial, issuer_key_id, provisioner, not_before, not_after, status, created_at FROM certificates WHERE serial = ?";

/**
 * The override naming the certificate that ends first, among those recorded after it was issued:
 * one arm per selector kind, each a search of renewal_windows_by_selector (kind, value, created_at),
 * rather than one OR that the planner may answer with a scan of the table.
 */
export const RENEWAL_OVERRIDE_SQL = `
SELECT kind, value, window_start, window_end, created_at FROM renewal_windows WHERE kind = 'issuer' AND value = @issuer AND created_at > @issuedAt
UNION ALL
SELECT kind, value, window_start, window_end, created_at FROM renewal_windows WHERE kind = 'provisioner' AND value = @provisioner AND created_at > @issuedAt
UNION ALL
SELECT kind, value, window_start, window_end, created_at FROM renewal_windows WHERE kind = 'serial' AND value = @serial AND created_at > @issuedAt
ORDER BY window_end, created_at LIMIT 1`;

/**
 * How many certificates a selector names that are live at @now. The issuer arm walks
 * certificates_by_issuer (issuer_key_id, status, not_after); the serial arm is a primary-key read;
 * the provisioner arm has no index of its own (one more index to maintain on every issuance, for
 * a rare operator command, would be the wrong trade): it reads what the planner picks, at worst
 * every row once, which a command run by hand can afford.
 */
const LIVE_COUNT_SQL: Record<RenewalSelectorKind, string> = {
  issuer: "SELECT COUNT(*) FROM certificates WHERE issuer_key_id = @value AND status = 'valid' AND not_after > @now AND not_before <= @now",
  provisioner: "SELECT COUNT(*) FROM certificates WHERE provisioner = @value AND status = 'valid' AND not_after > @now AND not_before <= @now",
  serial: "SELECT COUNT(*) FROM certificates WHERE serial = @value AND status = 'valid' AND not_after > @now AND not_before <= @now",
};

interface SubjectRow {
  serial: string;
  issuer_key_id: string;
  provisioner: string;
  not_before: number;
  not_after: number;
  status: CertificateStatus;
  created_at: number;
}

interface OverrideRow {
  kind: RenewalSelectorKind;
  value: string;
  window_start: number;
  window_end: number;
  created_at: number;
}

/**
 * The renewal_windows table (migration v7) over the SqliteStore's own better-sqlite3 handle, as
 * SqliteOcspStore does: every process that serves the API (the primary, each API worker) and the
 * `fleetca renew-window` command read and write the same file.
 */
export class SqliteRenewalWindows implements RenewalWindowStore {
  readonly #db: Database.Database;
  readonly #subject: Database.Statement;
  readonly #override: Database.Statement;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#subject = db.prepare(RENEWAL_SUBJECT_SQL);
    this.#override = db.prepare(RENEWAL_OVERRIDE_SQL);
  }

  /** Synchronous: RenewalInfoLookup's port is SqliteRequestPorts.renewalSubject, which calls this. */
  renewalSubject(serial: SerialHex): RenewalSubject | null {
    // One read transaction, so the certificate and its override come from the same snapshot.
    return this.#db.transaction((): RenewalSubject | null => {
      const c = this.#subject.get(serial) as SubjectRow | undefined;
      if (!c) return null;
      const o = this.#override.get({ issuer: c.issuer_key_id, provisioner: c.provisioner, serial: c.serial, issuedAt: c.created_at }) as OverrideRow | undefined;
      return {
        serial: c.serial as SerialHex,
        issuerKeyId: c.issuer_key_id,
        provisioner: c.provisioner,
        notBefore: new Date(c.not_before),
        notAfter: new Date(c.not_after),
        status: c.status,
        createdAt: new Date(c.created_at),
        override: o
          ? { kind: o.kind, value: o.value, start: new Date(o.window_start), end: new Date(o.window_end), createdAt: new Date(o.created_at) }
          : null,
      };
    }).deferred();
  }

  /** The port (asynchronous for PostgreSQL): recordOverride, whose transaction runs whole within the call. */
  async recordRenewalOverride(o: RenewalWindowOverride, now: Date): Promise<{ matched: number }> {
    return this.recordOverride(o, now);
  }

  /**
   * recordRenewalOverride, synchronously: for the kill switch and an intermediate's activation,
   * which record the override inside their own better-sqlite3 transaction (where it nests as a
   * savepoint), so the issuer's change and its renewal window commit together.
   */
  recordOverride(o: RenewalWindowOverride, now: Date): { matched: number } {
    const count = this.#db.prepare(LIVE_COUNT_SQL[o.kind]).pluck();
    const insert = this.#db.prepare(
      "INSERT INTO renewal_windows (kind, value, window_start, window_end, created_at) VALUES (?, ?, ?, ?, ?)",
    );
    return this.#db
      .transaction(() => {
        insert.run(o.kind, o.value, o.start.getTime(), o.end.getTime(), o.createdAt.getTime());
        return { matched: count.get({ value: o.value, now: now.getTime() }) as number };
      })
      .immediate();
  }
}
