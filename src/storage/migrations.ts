/**
 * Versioned schema migrations, applied in order inside one transaction each, by both storage
 * adapters from this one list: `sqlite` by storage/sqlite/sqlite-store.ts, `postgres` by
 * storage/postgres/pg-schema.ts. A migration is never edited after it ships (the SQLite text of
 * v1–v13 is byte for byte what shipped); later changes are new entries, in both dialects.
 * Revocation fields and per-issuer indexes are here from v1 so CRL/OCSP can read them without a
 * rewrite.
 *
 * The PostgreSQL text reaches the same schema: the same tables, columns, primary keys, unique
 * constraints, CHECKs, foreign keys and index names (partial ones included: PostgreSQL has
 * `CREATE INDEX … WHERE` too); test/pg-schema.test.ts compares the two. How the types map:
 * - INTEGER → BIGINT. A SQLite INTEGER is a 64-bit signed integer (unix ms, counters, reason
 *   codes alike); BIGINT is the PostgreSQL type with that range, so no value SQLite holds can
 *   overflow. (node-postgres returns BIGINT as a string unless told otherwise: the PostgreSQL
 *   store converts on read.)
 * - REAL → DOUBLE PRECISION (both 8-byte IEEE floats; PostgreSQL's REAL is 4 bytes).
 * - BLOB → BYTEA.
 * - TEXT → TEXT COLLATE "C". SQLite compares TEXT with its BINARY collation (memcmp); PostgreSQL
 *   uses the database's default collation, which for a locale such as en_US orders text
 *   differently (docs, "Collation Support"). "C" is byte order, so ORDER BY serial, keyset
 *   pagination (serial > ?) and the order of the indexes agree between the adapters whatever
 *   locale the operator's database was created with. (Equality is the same under any
 *   deterministic collation.)
 * - STRICT is dropped: PostgreSQL columns are always strictly typed.
 * - INTEGER PRIMARY KEY (a rowid alias) that the store leaves for the database to fill in →
 *   BIGINT GENERATED ALWAYS AS IDENTITY; one the store sets itself (audit_log.idx,
 *   audit_tree_heads.tree_size) → a plain BIGINT PRIMARY KEY.
 * The data-moving statements (v3, v4, v10, v11, v13) are translated too, although a PostgreSQL
 * database that fleetca creates runs v1–v13 on empty tables: PostgreSQL support came after v13.
 * DDL is transactional in PostgreSQL (docs, "Transactional DDL"), so a migration that fails
 * leaves nothing behind, as in SQLite.
 */
export interface Migration {
  version: number;
  name: string;
  /** The migration in SQLite's dialect: what shipped, never edited. */
  sqlite: string;
  /** The same migration in PostgreSQL's dialect, reaching the same schema. */
  postgres: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "issuers, certificates, used tokens, idempotency keys, provisioner keys",
    sqlite: `
CREATE TABLE issuers (
  key_id        TEXT PRIMARY KEY,               -- hex subject key identifier
  role          TEXT NOT NULL CHECK (role IN ('root', 'intermediate')),
  key_name      TEXT NOT NULL,                  -- wrapped key file under keys/
  parent_key_id TEXT REFERENCES issuers(key_id),
  der           BLOB NOT NULL,
  not_before    INTEGER NOT NULL,               -- unix ms
  not_after     INTEGER NOT NULL,
  status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
  created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE certificates (
  serial            TEXT PRIMARY KEY,           -- lower-case hex
  issuer_key_id     TEXT NOT NULL REFERENCES issuers(key_id),
  sans              TEXT NOT NULL,              -- JSON {"dns":[],"ip":[],"uri":[]}
  subject_cn        TEXT,
  not_before        INTEGER NOT NULL,
  not_after         INTEGER NOT NULL,
  der               BLOB NOT NULL,
  provisioner       TEXT NOT NULL,
  token_id          TEXT,
  status            TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
  revoked_at        INTEGER,
  revocation_reason INTEGER CHECK (revocation_reason BETWEEN 0 AND 10 AND revocation_reason <> 7),
  created_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX certificates_by_issuer ON certificates (issuer_key_id, status, not_after);
CREATE INDEX certificates_by_expiry ON certificates (not_after);
CREATE INDEX certificates_revoked ON certificates (issuer_key_id, revoked_at) WHERE status = 'revoked';

CREATE TABLE used_tokens (
  token_id    TEXT PRIMARY KEY,                 -- provisioner:jti
  provisioner TEXT NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX used_tokens_by_expiry ON used_tokens (expires_at);

CREATE TABLE idempotency_keys (
  key          TEXT PRIMARY KEY,
  request_hash TEXT NOT NULL,
  token_id     TEXT,
  serial       TEXT NOT NULL REFERENCES certificates(serial),
  expires_at   INTEGER NOT NULL,
  created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

CREATE TABLE provisioner_keys (
  name       TEXT PRIMARY KEY,
  kid        TEXT NOT NULL UNIQUE,
  public_jwk TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
`,
    postgres: `
CREATE TABLE issuers (
  key_id        TEXT COLLATE "C" PRIMARY KEY,
  role          TEXT COLLATE "C" NOT NULL CHECK (role IN ('root', 'intermediate')),
  key_name      TEXT COLLATE "C" NOT NULL,
  parent_key_id TEXT COLLATE "C" REFERENCES issuers(key_id),
  der           BYTEA NOT NULL,
  not_before    BIGINT NOT NULL,
  not_after     BIGINT NOT NULL,
  status        TEXT COLLATE "C" NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
  created_at    BIGINT NOT NULL
);

CREATE TABLE certificates (
  serial            TEXT COLLATE "C" PRIMARY KEY,
  issuer_key_id     TEXT COLLATE "C" NOT NULL REFERENCES issuers(key_id),
  sans              TEXT COLLATE "C" NOT NULL,
  subject_cn        TEXT COLLATE "C",
  not_before        BIGINT NOT NULL,
  not_after         BIGINT NOT NULL,
  der               BYTEA NOT NULL,
  provisioner       TEXT COLLATE "C" NOT NULL,
  token_id          TEXT COLLATE "C",
  status            TEXT COLLATE "C" NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
  revoked_at        BIGINT,
  revocation_reason BIGINT CHECK (revocation_reason BETWEEN 0 AND 10 AND revocation_reason <> 7),
  created_at        BIGINT NOT NULL
);
CREATE INDEX certificates_by_issuer ON certificates (issuer_key_id, status, not_after);
CREATE INDEX certificates_by_expiry ON certificates (not_after);
CREATE INDEX certificates_revoked ON certificates (issuer_key_id, revoked_at) WHERE status = 'revoked';

CREATE TABLE used_tokens (
  token_id    TEXT COLLATE "C" PRIMARY KEY,
  provisioner TEXT COLLATE "C" NOT NULL,
  expires_at  BIGINT NOT NULL,
  used_at     BIGINT NOT NULL
);
CREATE INDEX used_tokens_by_expiry ON used_tokens (expires_at);

CREATE TABLE idempotency_keys (
  key          TEXT COLLATE "C" PRIMARY KEY,
  request_hash TEXT COLLATE "C" NOT NULL,
  token_id     TEXT COLLATE "C",
  serial       TEXT COLLATE "C" NOT NULL REFERENCES certificates(serial),
  expires_at   BIGINT NOT NULL,
  created_at   BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

CREATE TABLE provisioner_keys (
  name       TEXT COLLATE "C" PRIMARY KEY,
  kid        TEXT COLLATE "C" NOT NULL UNIQUE,
  public_jwk TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL
);
`,
  },
  {
    version: 2,
    name: "certificates.renewed_from",
    // The serial a renewal replaced (POST /v1/renew); NULL for a first issuance and for every
    // row written before v2. Readers must tolerate a v1 file opened read-only (no such column).
    sqlite: `ALTER TABLE certificates ADD COLUMN renewed_from TEXT;`,
    postgres: `ALTER TABLE certificates ADD COLUMN renewed_from TEXT COLLATE "C";`,
  },
  {
    version: 3,
    name: "revocation log, CRL state",
    // revocation_log: every revocation in commit order, written in the same transaction as the
    // status flip. The daemon follows it to re-sign OCSP and CRLs within seconds, including for
    // revocations made by another process (`fleetca revoke`). crl_state: the last CRL per issuer;
    // crl_number only goes up, across restarts (RFC 5280 §5.2.3).
    sqlite: `
CREATE TABLE revocation_log (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  serial        TEXT NOT NULL REFERENCES certificates(serial),
  issuer_key_id TEXT NOT NULL,
  revoked_at    INTEGER NOT NULL,
  reason        INTEGER
) STRICT;
INSERT INTO revocation_log (serial, issuer_key_id, revoked_at, reason)
  SELECT serial, issuer_key_id, revoked_at, revocation_reason FROM certificates
  WHERE status = 'revoked' ORDER BY revoked_at, serial;

CREATE TABLE crl_state (
  issuer_key_id TEXT PRIMARY KEY REFERENCES issuers(key_id),
  crl_number    INTEGER NOT NULL,
  this_update   INTEGER NOT NULL,
  next_update   INTEGER NOT NULL,
  der           BLOB NOT NULL
) STRICT;
`,
    // seq: SQLite's AUTOINCREMENT rowid becomes an identity column (a sequence): never reused;
    // the rows copied here are numbered in the SELECT's ORDER BY order (on PostgreSQL this copy
    // reads an empty table anyway). In SQLite, one writer at a time makes seq order commit order;
    // a sequence value is taken at INSERT, not at COMMIT, and a rolled-back one is a gap
    // (PostgreSQL docs, "Sequence Manipulation Functions": nextval is never rolled back). So the
    // PostgreSQL store must serialize its appends to this log (a lock taken in the revoking
    // transaction) for a reader following `seq > last` never to skip a row committed late; gaps
    // are harmless (readers use > and MAX).
    postgres: `
CREATE TABLE revocation_log (
  seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  serial        TEXT COLLATE "C" NOT NULL REFERENCES certificates(serial),
  issuer_key_id TEXT COLLATE "C" NOT NULL,
  revoked_at    BIGINT NOT NULL,
  reason        BIGINT
);
INSERT INTO revocation_log (serial, issuer_key_id, revoked_at, reason)
  SELECT serial, issuer_key_id, revoked_at, revocation_reason FROM certificates
  WHERE status = 'revoked' ORDER BY revoked_at, serial;

CREATE TABLE crl_state (
  issuer_key_id TEXT COLLATE "C" PRIMARY KEY REFERENCES issuers(key_id),
  crl_number    BIGINT NOT NULL,
  this_update   BIGINT NOT NULL,
  next_update   BIGINT NOT NULL,
  der           BYTEA NOT NULL
);
`,
  },
  {
    version: 4,
    name: "CRL partitions (shards), per-scope CRLs, issuer revocation",
    // crls replaces crl_state: one row per CRL scope, (issuer, shard) with shard -1 for the
    // issuer's full CRL; each scope has its own number, only ever going up (RFC 5280 §5.2.3).
    // revocation_seq is the revocation_log position the CRL's content was read after: a restart
    // re-serves the stored CRL unless a later revocation touched its scope. A CRL carried over
    // from crl_state gets -1, so any revocation at all makes it be rebuilt once.
    // The DER lives in crl_chunks (128 KiB each), written one chunk per transaction before the
    // crls row is switched to it (write_id): storing a 40 MB CRL in one statement held the event
    // loop for ~750 ms. Chunks of a write that never got switched to are deleted by a later one
    // (those of a number at or below the current one: a higher one may still be being written).
    // certificates.crl_shard: the partition whose URL the certificate's CRL distribution point
    // names (NULL: it names the issuer's full CRL). crl_shards: every partition an issuer ever
    // assigned, so shrinking crl.shards never orphans a URL an unexpired certificate carries.
    // issuers.revoked_at/revocation_reason: an intermediate listed on its root's CRL.
    sqlite: `
CREATE TABLE crls (
  issuer_key_id  TEXT NOT NULL REFERENCES issuers(key_id),
  shard          INTEGER NOT NULL CHECK (shard >= -1),
  crl_number     INTEGER NOT NULL,
  this_update    INTEGER NOT NULL,
  next_update    INTEGER NOT NULL,
  entries        INTEGER NOT NULL,
  revocation_seq INTEGER NOT NULL,
  write_id       TEXT NOT NULL,
  der_length     INTEGER NOT NULL,
  PRIMARY KEY (issuer_key_id, shard)
) STRICT;
CREATE TABLE crl_chunks (
  issuer_key_id TEXT NOT NULL,
  shard         INTEGER NOT NULL,
  crl_number    INTEGER NOT NULL,
  write_id      TEXT NOT NULL,
  seq           INTEGER NOT NULL,
  bytes         BLOB NOT NULL,
  PRIMARY KEY (issuer_key_id, shard, write_id, seq)
) STRICT;
INSERT INTO crls (issuer_key_id, shard, crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length)
  SELECT issuer_key_id, -1, crl_number, this_update, next_update, -1, -1, 'v3', length(der) FROM crl_state;
INSERT INTO crl_chunks (issuer_key_id, shard, crl_number, write_id, seq, bytes) SELECT issuer_key_id, -1, crl_number, 'v3', 0, der FROM crl_state;
DROP TABLE crl_state;

CREATE TABLE crl_shards (
  issuer_key_id TEXT NOT NULL REFERENCES issuers(key_id),
  shard         INTEGER NOT NULL CHECK (shard >= 0),
  PRIMARY KEY (issuer_key_id, shard)
) STRICT;

ALTER TABLE certificates ADD COLUMN crl_shard INTEGER CHECK (crl_shard >= 0);
-- The CRL builder reads revoked certificates in serial order, page by page (keyset pagination);
-- covering indexes, so a million entries never touch the table rows (measured: 8.6 s → 1.5 s).
CREATE INDEX certificates_revoked_by_serial ON certificates (issuer_key_id, serial, not_after, revoked_at, revocation_reason) WHERE status = 'revoked';
CREATE INDEX certificates_revoked_by_shard ON certificates (issuer_key_id, crl_shard, serial, not_after, revoked_at, revocation_reason) WHERE status = 'revoked';
CREATE INDEX revocation_log_by_issuer ON revocation_log (issuer_key_id, seq);

ALTER TABLE issuers ADD COLUMN revoked_at INTEGER;
ALTER TABLE issuers ADD COLUMN revocation_reason INTEGER CHECK (revocation_reason BETWEEN 0 AND 10 AND revocation_reason <> 7);
`,
    // length(der) of a BLOB is its byte count in SQLite; octet_length is that for BYTEA. The sweep
    // of unused crl_chunks names them by SQLite's rowid; PostgreSQL has none, and the PostgreSQL
    // store names them by their primary key instead, so no column stands in for it.
    postgres: `
CREATE TABLE crls (
  issuer_key_id  TEXT COLLATE "C" NOT NULL REFERENCES issuers(key_id),
  shard          BIGINT NOT NULL CHECK (shard >= -1),
  crl_number     BIGINT NOT NULL,
  this_update    BIGINT NOT NULL,
  next_update    BIGINT NOT NULL,
  entries        BIGINT NOT NULL,
  revocation_seq BIGINT NOT NULL,
  write_id       TEXT COLLATE "C" NOT NULL,
  der_length     BIGINT NOT NULL,
  PRIMARY KEY (issuer_key_id, shard)
);
CREATE TABLE crl_chunks (
  issuer_key_id TEXT COLLATE "C" NOT NULL,
  shard         BIGINT NOT NULL,
  crl_number    BIGINT NOT NULL,
  write_id      TEXT COLLATE "C" NOT NULL,
  seq           BIGINT NOT NULL,
  bytes         BYTEA NOT NULL,
  PRIMARY KEY (issuer_key_id, shard, write_id, seq)
);
INSERT INTO crls (issuer_key_id, shard, crl_number, this_update, next_update, entries, revocation_seq, write_id, der_length)
  SELECT issuer_key_id, -1, crl_number, this_update, next_update, -1, -1, 'v3', octet_length(der) FROM crl_state;
INSERT INTO crl_chunks (issuer_key_id, shard, crl_number, write_id, seq, bytes) SELECT issuer_key_id, -1, crl_number, 'v3', 0, der FROM crl_state;
DROP TABLE crl_state;

CREATE TABLE crl_shards (
  issuer_key_id TEXT COLLATE "C" NOT NULL REFERENCES issuers(key_id),
  shard         BIGINT NOT NULL CHECK (shard >= 0),
  PRIMARY KEY (issuer_key_id, shard)
);

ALTER TABLE certificates ADD COLUMN crl_shard BIGINT CHECK (crl_shard >= 0);
CREATE INDEX certificates_revoked_by_serial ON certificates (issuer_key_id, serial, not_after, revoked_at, revocation_reason) WHERE status = 'revoked';
CREATE INDEX certificates_revoked_by_shard ON certificates (issuer_key_id, crl_shard, serial, not_after, revoked_at, revocation_reason) WHERE status = 'revoked';
CREATE INDEX revocation_log_by_issuer ON revocation_log (issuer_key_id, seq);

ALTER TABLE issuers ADD COLUMN revoked_at BIGINT;
ALTER TABLE issuers ADD COLUMN revocation_reason BIGINT CHECK (revocation_reason BETWEEN 0 AND 10 AND revocation_reason <> 7);
`,
  },
  {
    version: 5,
    name: "pre-signed OCSP answers",
    // One pre-signed OCSPResponse per certificate (SHA-1 CertID), shared by every process that
    // serves /ocsp. status = the certificate status it was signed for; refresh_at = half-life.
    // No foreign key: rows are written in large batches by the pre-signer and are disposable.
    sqlite: `
CREATE TABLE ocsp_answers (
  issuer_key_id TEXT NOT NULL,
  serial        TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
  der           BLOB NOT NULL,
  this_update   INTEGER NOT NULL,
  next_update   INTEGER NOT NULL,
  refresh_at    INTEGER NOT NULL,
  PRIMARY KEY (issuer_key_id, serial)
) STRICT, WITHOUT ROWID;
CREATE INDEX ocsp_answers_by_expiry ON ocsp_answers (next_update);
`,
    // WITHOUT ROWID (SQLite: store the rows in the primary-key b-tree) has no PostgreSQL
    // counterpart: a table is always a heap beside its primary-key index.
    postgres: `
CREATE TABLE ocsp_answers (
  issuer_key_id TEXT COLLATE "C" NOT NULL,
  serial        TEXT COLLATE "C" NOT NULL,
  status        TEXT COLLATE "C" NOT NULL CHECK (status IN ('valid', 'revoked')),
  der           BYTEA NOT NULL,
  this_update   BIGINT NOT NULL,
  next_update   BIGINT NOT NULL,
  refresh_at    BIGINT NOT NULL,
  PRIMARY KEY (issuer_key_id, serial)
);
CREATE INDEX ocsp_answers_by_expiry ON ocsp_answers (next_update);
`,
  },
  {
    version: 6,
    name: "CRL entry records kept in the revoked-certificate indexes",
    // crl_record: a revoked row's CRL entry as its RevokedPage record (storage/ports.ts), in hex:
    // octet count (ff for a serial that is not 1–20 octets of even-length hex, which the builder
    // refuses), serial, revocation second (floor of ms / 1000) as 16 hex digits of two's
    // complement, reason code or ff. The same expression revokedPage's printf evaluated per row
    // and per build (half of reading a 100,000-entry CRL's pages); here it is evaluated once,
    // when a row enters the index (its revocation, or this migration for the rows already
    // revoked), and a page is the concatenation of its rows' records. VIRTUAL: the table rows
    // stay as they are (nothing to rewrite in the migration, nothing for an INSERT or the
    // revoking UPDATE to name); the partial indexes store the value, and the page query reads it
    // from them without touching the table. revoked_at and revocation_reason leave the indexes:
    // the record carries them, and nothing else reads them through these indexes.
    sqlite: `
ALTER TABLE certificates ADD COLUMN crl_record TEXT GENERATED ALWAYS AS (
  printf('%02x%s%016x%02x', CASE WHEN length(serial) % 2 = 0 AND length(serial) <= 40 THEN length(serial) / 2 ELSE 255 END, serial,
    (revoked_at - (revoked_at % 1000 + 1000) % 1000) / 1000, ifnull(revocation_reason, 255))
) VIRTUAL;
DROP INDEX certificates_revoked_by_serial;
DROP INDEX certificates_revoked_by_shard;
CREATE INDEX certificates_revoked_by_serial ON certificates (issuer_key_id, serial, not_after, crl_record) WHERE status = 'revoked';
CREATE INDEX certificates_revoked_by_shard ON certificates (issuer_key_id, crl_shard, serial, not_after, crl_record) WHERE status = 'revoked';
`,
    // PostgreSQL 12–17 have STORED generated columns only (18's VIRTUAL ones cannot be indexed;
    // docs, "Generated Columns"), so the record is computed at INSERT/UPDATE and stored in the row,
    // and the partial indexes hold it as in SQLite. printf('%02x%s%016x%02x', …) becomes
    // lpad(to_hex(…)) pieces: to_hex of a negative BIGINT is its 64-bit two's complement, as %016x
    // prints it; lpad pads to the width (and would cut longer text, which the CASE and the CHECK on
    // revocation_reason rule out). SQLite's printf formats a NULL as 0 where to_hex(NULL) is NULL,
    // hence coalesce(revoked_at, 0): both give the same text for every row (test/pg-schema.test.ts).
    postgres: `
ALTER TABLE certificates ADD COLUMN crl_record TEXT COLLATE "C" GENERATED ALWAYS AS (
  lpad(to_hex(CASE WHEN length(serial) % 2 = 0 AND length(serial) <= 40 THEN length(serial) / 2 ELSE 255 END), 2, '0') || serial
  || lpad(to_hex((coalesce(revoked_at, 0) - (coalesce(revoked_at, 0) % 1000 + 1000) % 1000) / 1000), 16, '0')
  || lpad(to_hex(coalesce(revocation_reason, 255)), 2, '0')
) STORED;
DROP INDEX certificates_revoked_by_serial;
DROP INDEX certificates_revoked_by_shard;
CREATE INDEX certificates_revoked_by_serial ON certificates (issuer_key_id, serial, not_after, crl_record) WHERE status = 'revoked';
CREATE INDEX certificates_revoked_by_shard ON certificates (issuer_key_id, crl_shard, serial, not_after, crl_record) WHERE status = 'revoked';
`,
  },
  {
    version: 7,
    name: "renewal-window overrides",
    // One row per `fleetca renew-window` command, never a rewrite of the certificates it names (a
    // fleet can be 100,000 rows): GET /v1/renewal-info applies it when it reads a certificate
    // issued before created_at. The index answers "overrides naming this issuer / provisioner /
    // serial, recorded after this certificate" with one index search per selector kind, whatever
    // the number of certificates; the certificate itself is found by its primary key.
    sqlite: `
CREATE TABLE renewal_windows (
  id           INTEGER PRIMARY KEY,
  kind         TEXT NOT NULL CHECK (kind IN ('issuer', 'provisioner', 'serial')),
  value        TEXT NOT NULL,
  window_start INTEGER NOT NULL,              -- unix ms
  window_end   INTEGER NOT NULL CHECK (window_end > window_start),
  created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX renewal_windows_by_selector ON renewal_windows (kind, value, created_at);
`,
    // id: SQLite's INTEGER PRIMARY KEY is the rowid, filled in when the INSERT omits it, which the
    // store does; an identity column does that. The CHECK naming two columns is a table constraint:
    // PostgreSQL wants a column constraint to refer to its own column only (docs, CREATE TABLE).
    postgres: `
CREATE TABLE renewal_windows (
  id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind         TEXT COLLATE "C" NOT NULL CHECK (kind IN ('issuer', 'provisioner', 'serial')),
  value        TEXT COLLATE "C" NOT NULL,
  window_start BIGINT NOT NULL,
  window_end   BIGINT NOT NULL,
  created_at   BIGINT NOT NULL,
  CHECK (window_end > window_start)
);
CREATE INDEX renewal_windows_by_selector ON renewal_windows (kind, value, created_at);
`,
  },
  {
    version: 8,
    name: "issuance log (Merkle tree leaves, signed tree heads, audit keys)",
    // The leaves of the issuance log's Merkle tree (src/audit/merkle.ts, RFC 9162 §2.1): idx is
    // the leaf index, gapless from 0; entry the leaf's exact bytes; leaf_hash its hash, kept so a
    // tree head is computed without re-hashing every entry (`fleetca audit verify` re-hashes them
    // all anyway). serial / provisioner / subjects are copies out of the entry for queries only.
    // The triggers make the log append-only to fleetca's own connections (a bug cannot rewrite
    // it); against someone who edits the file, the signed tree heads are the protection.
    sqlite: `
CREATE TABLE audit_log (
  idx         INTEGER PRIMARY KEY,
  at          INTEGER NOT NULL,                -- unix ms, also in the entry
  kind        TEXT NOT NULL,
  serial      TEXT,
  provisioner TEXT,
  subjects    TEXT,                            -- the SANs, one per line
  entry       BLOB NOT NULL,
  leaf_hash   BLOB NOT NULL
) STRICT;
CREATE INDEX audit_log_by_serial ON audit_log (serial) WHERE serial IS NOT NULL;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the issuance log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the issuance log is append-only'); END;
CREATE TABLE audit_tree_heads (
  tree_size   INTEGER PRIMARY KEY,
  root_hash   BLOB NOT NULL,
  timestamp   INTEGER NOT NULL,               -- unix ms
  key_name    TEXT NOT NULL,
  key_spki    BLOB NOT NULL,
  signature   BLOB NOT NULL
) STRICT;
CREATE TRIGGER audit_tree_heads_no_update BEFORE UPDATE ON audit_tree_heads BEGIN SELECT RAISE(ABORT, 'signed tree heads are append-only'); END;
CREATE TRIGGER audit_tree_heads_no_delete BEFORE DELETE ON audit_tree_heads BEGIN SELECT RAISE(ABORT, 'signed tree heads are append-only'); END;
CREATE TABLE audit_keys (
  key_name    TEXT PRIMARY KEY,               -- wrapped key file under keys/
  key_spki    BLOB NOT NULL,
  created_at  INTEGER NOT NULL
) STRICT;
`,
    // idx and tree_size are set by the store (gapless leaf index, tree size), not generated: plain
    // BIGINT keys. SQLite's RAISE(ABORT) triggers become one trigger function raising the message
    // it is given. PostgreSQL also has TRUNCATE, which fires no ON DELETE trigger (docs,
    // TRUNCATE), so a statement-level BEFORE TRUNCATE trigger refuses it too.
    postgres: `
CREATE TABLE audit_log (
  idx         BIGINT PRIMARY KEY,
  at          BIGINT NOT NULL,
  kind        TEXT COLLATE "C" NOT NULL,
  serial      TEXT COLLATE "C",
  provisioner TEXT COLLATE "C",
  subjects    TEXT COLLATE "C",
  entry       BYTEA NOT NULL,
  leaf_hash   BYTEA NOT NULL
);
CREATE INDEX audit_log_by_serial ON audit_log (serial) WHERE serial IS NOT NULL;
CREATE FUNCTION fleetca_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION fleetca_refuse_change('the issuance log is append-only');
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION fleetca_refuse_change('the issuance log is append-only');
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION fleetca_refuse_change('the issuance log is append-only');
CREATE TABLE audit_tree_heads (
  tree_size   BIGINT PRIMARY KEY,
  root_hash   BYTEA NOT NULL,
  timestamp   BIGINT NOT NULL,
  key_name    TEXT COLLATE "C" NOT NULL,
  key_spki    BYTEA NOT NULL,
  signature   BYTEA NOT NULL
);
CREATE TRIGGER audit_tree_heads_no_update BEFORE UPDATE ON audit_tree_heads FOR EACH ROW EXECUTE FUNCTION fleetca_refuse_change('signed tree heads are append-only');
CREATE TRIGGER audit_tree_heads_no_delete BEFORE DELETE ON audit_tree_heads FOR EACH ROW EXECUTE FUNCTION fleetca_refuse_change('signed tree heads are append-only');
CREATE TRIGGER audit_tree_heads_no_truncate BEFORE TRUNCATE ON audit_tree_heads FOR EACH STATEMENT EXECUTE FUNCTION fleetca_refuse_change('signed tree heads are append-only');
CREATE TABLE audit_keys (
  key_name    TEXT COLLATE "C" PRIMARY KEY,
  key_spki    BYTEA NOT NULL,
  created_at  BIGINT NOT NULL
);
`,
  },
  {
    version: 9,
    name: "cross certificates (root rotation)",
    // `fleetca rotate root`: the new root's name and key certified by the old root, served in
    // /roots.pem beside both roots so hosts that pin the old root accept the new one
    // (agent/trust.ts acceptRefreshedRoots) until `fleetca retire root`.
    sqlite: `
CREATE TABLE cross_certificates (
  subject_key_id TEXT NOT NULL REFERENCES issuers(key_id),  -- the new root
  issuer_key_id  TEXT NOT NULL REFERENCES issuers(key_id),  -- the root that certified it
  der            BLOB NOT NULL,
  not_after      INTEGER NOT NULL,
  created_at     INTEGER NOT NULL,
  PRIMARY KEY (subject_key_id, issuer_key_id)
) STRICT;
`,
    postgres: `
CREATE TABLE cross_certificates (
  subject_key_id TEXT COLLATE "C" NOT NULL REFERENCES issuers(key_id),
  issuer_key_id  TEXT COLLATE "C" NOT NULL REFERENCES issuers(key_id),
  der            BYTEA NOT NULL,
  not_after      BIGINT NOT NULL,
  created_at     BIGINT NOT NULL,
  PRIMARY KEY (subject_key_id, issuer_key_id)
);
`,
  },
  {
    version: 10,
    name: "issuers.activated_at (intermediate rotation)",
    // When an intermediate became the issuing one (`fleetca init`, `fleetca rotate intermediate`,
    // `fleetca revoke-issuer`): the current issuer is the active, unrevoked, valid intermediate
    // activated last. NULL for a prepared intermediate that has not been switched to (and for
    // roots, which never issue leaves). Intermediates made before v10 were activated when made.
    sqlite: `
ALTER TABLE issuers ADD COLUMN activated_at INTEGER;
UPDATE issuers SET activated_at = created_at WHERE role = 'intermediate';
`,
    postgres: `
ALTER TABLE issuers ADD COLUMN activated_at BIGINT;
UPDATE issuers SET activated_at = created_at WHERE role = 'intermediate';
`,
  },
  {
    version: 11,
    name: "idempotency keys scoped to the token's identity",
    // An Idempotency-Key is a name the client picks, so it is unique only within one identity:
    // the key becomes (provisioner, subject, key), the verified token's provisioner and subject
    // (issue 15: two clients that picked the same key collided, the second refused). The rows
    // already stored are dropped, not carried over: the token's subject was never stored, so a
    // carried-over row could not be scoped. That is safe: a row only dedupes retries of a request
    // whose certificate is stored anyway, and lives 24 h; a retry across this upgrade of a request
    // that succeeded before it gets 401 replayed (its token is spent), never a second certificate.
    sqlite: `
DROP TABLE idempotency_keys;
CREATE TABLE idempotency_keys (
  provisioner  TEXT NOT NULL,
  subject      TEXT NOT NULL,
  key          TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  token_id     TEXT,
  serial       TEXT NOT NULL REFERENCES certificates(serial),
  expires_at   INTEGER NOT NULL,
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (provisioner, subject, key)
) STRICT;
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
`,
    postgres: `
DROP TABLE idempotency_keys;
CREATE TABLE idempotency_keys (
  provisioner  TEXT COLLATE "C" NOT NULL,
  subject      TEXT COLLATE "C" NOT NULL,
  key          TEXT COLLATE "C" NOT NULL,
  request_hash TEXT COLLATE "C" NOT NULL,
  token_id     TEXT COLLATE "C",
  serial       TEXT COLLATE "C" NOT NULL REFERENCES certificates(serial),
  expires_at   BIGINT NOT NULL,
  created_at   BIGINT NOT NULL,
  PRIMARY KEY (provisioner, subject, key)
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
`,
  },
  {
    version: 12,
    name: "rate-limit token buckets",
    // One row per token bucket that is not full (registration/rate-limits.ts): issuance per
    // provisioner and per subject, renewals per lineage, failed token verifications per client
    // address. Each process keeps the buckets it uses in memory and merges what it took into
    // these rows about once a second, so the limits hold across restarts and across the
    // processes sharing the file. After each merge a process reads which rows were merged since
    // its last (the index on at): it reads a bucket only when a row exists for it, so a request
    // for a key it has not met (a new subject) never reaches SQLite. tokens may be negative
    // (owed by processes that together took more than the bucket held). full_at: when refilling makes the row meaningless (a missing
    // row is a full bucket); rows past it are deleted as the merges go, which keeps the table to
    // the keys active lately.
    sqlite: `
CREATE TABLE rate_limit_buckets (
  limit_name TEXT NOT NULL,
  key        TEXT NOT NULL,
  tokens     REAL NOT NULL,
  at         INTEGER NOT NULL,                -- unix ms the tokens were counted at
  full_at    INTEGER NOT NULL,                -- unix ms
  PRIMARY KEY (limit_name, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX rate_limit_buckets_by_full_at ON rate_limit_buckets (full_at);
CREATE INDEX rate_limit_buckets_by_at ON rate_limit_buckets (at);
`,
    // tokens: SQLite's REAL is an 8-byte IEEE float; PostgreSQL's REAL is 4 bytes, its DOUBLE
    // PRECISION is the 8-byte one.
    postgres: `
CREATE TABLE rate_limit_buckets (
  limit_name TEXT COLLATE "C" NOT NULL,
  key        TEXT COLLATE "C" NOT NULL,
  tokens     DOUBLE PRECISION NOT NULL,
  at         BIGINT NOT NULL,
  full_at    BIGINT NOT NULL,
  PRIMARY KEY (limit_name, key)
);
CREATE INDEX rate_limit_buckets_by_full_at ON rate_limit_buckets (full_at);
CREATE INDEX rate_limit_buckets_by_at ON rate_limit_buckets (at);
`,
  },
  {
    version: 13,
    name: "certificate lineages: superseded_by, lineage, attested_at (issue 15)",
    // A renewal supersedes its predecessor (superseded_by: the successor's serial), so one
    // certificate cannot fork into several renewable ones; a lineage is the chain of renewals
    // from one token (lineage: the serial of its first certificate), and attested_at is when
    // that token was verified, which maxRenewalAge counts from. Existing rows: each chain is
    // walked from its first certificate (renewed_from IS NULL); a predecessor renewed several
    // times before v13 is superseded by its latest renewal. instance: the platform instance a
    // jwt provisioner with instanceClaim bound the lineage to.
    sqlite: `
ALTER TABLE certificates ADD COLUMN superseded_by TEXT;
ALTER TABLE certificates ADD COLUMN lineage TEXT;
ALTER TABLE certificates ADD COLUMN attested_at INTEGER;
ALTER TABLE certificates ADD COLUMN instance TEXT;
CREATE INDEX certificates_by_instance ON certificates (provisioner, instance, status) WHERE instance IS NOT NULL;
CREATE INDEX certificates_by_renewed_from ON certificates (renewed_from) WHERE renewed_from IS NOT NULL;
WITH RECURSIVE chain(serial, root, at) AS (
  SELECT serial, serial, created_at FROM certificates WHERE renewed_from IS NULL
  UNION ALL
  SELECT c.serial, chain.root, chain.at FROM certificates c JOIN chain ON c.renewed_from = chain.serial
)
UPDATE certificates SET lineage = chain.root, attested_at = chain.at FROM chain WHERE chain.serial = certificates.serial;
UPDATE certificates SET lineage = serial, attested_at = created_at WHERE lineage IS NULL;
UPDATE certificates SET superseded_by = (
  SELECT s.serial FROM certificates s WHERE s.renewed_from = certificates.serial ORDER BY s.created_at DESC, s.serial DESC LIMIT 1
) WHERE serial IN (SELECT renewed_from FROM certificates WHERE renewed_from IS NOT NULL);
`,
    postgres: `
ALTER TABLE certificates ADD COLUMN superseded_by TEXT COLLATE "C";
ALTER TABLE certificates ADD COLUMN lineage TEXT COLLATE "C";
ALTER TABLE certificates ADD COLUMN attested_at BIGINT;
ALTER TABLE certificates ADD COLUMN instance TEXT COLLATE "C";
CREATE INDEX certificates_by_instance ON certificates (provisioner, instance, status) WHERE instance IS NOT NULL;
CREATE INDEX certificates_by_renewed_from ON certificates (renewed_from) WHERE renewed_from IS NOT NULL;
WITH RECURSIVE chain(serial, root, at) AS (
  SELECT serial, serial, created_at FROM certificates WHERE renewed_from IS NULL
  UNION ALL
  SELECT c.serial, chain.root, chain.at FROM certificates c JOIN chain ON c.renewed_from = chain.serial
)
UPDATE certificates SET lineage = chain.root, attested_at = chain.at FROM chain WHERE chain.serial = certificates.serial;
UPDATE certificates SET lineage = serial, attested_at = created_at WHERE lineage IS NULL;
UPDATE certificates SET superseded_by = (
  SELECT s.serial FROM certificates s WHERE s.renewed_from = certificates.serial ORDER BY s.created_at DESC, s.serial DESC LIMIT 1
) WHERE serial IN (SELECT renewed_from FROM certificates WHERE renewed_from IS NOT NULL);
`,
  },
  {
    version: 14,
    name: "CRL leases (one writer per CRL scope across replicas)",
    // Several replicas sharing one database each run a CRL publisher; a lease names the one that
    // builds and stores a scope's CRL, as Boulder's crl-updater leases its shards. shard -1 is the
    // issuer's full CRL, as in crls (v4). holder: the replica's own id; leased_until: unix ms, by
    // the clock of the replica that took it (storage/*-crl-leases.ts state the assumption). The
    // lease only keeps replicas from doing the same work twice: what a stale holder can never do
    // (overwrite a newer CRL) is refused by the fenced save, in the transaction that stores the CRL.
    sqlite: `
CREATE TABLE crl_leases (
  issuer_key_id TEXT NOT NULL REFERENCES issuers(key_id),
  shard         INTEGER NOT NULL CHECK (shard >= -1),
  holder        TEXT NOT NULL,
  leased_until  INTEGER NOT NULL,                -- unix ms
  PRIMARY KEY (issuer_key_id, shard)
) STRICT;
`,
    postgres: `
CREATE TABLE crl_leases (
  issuer_key_id TEXT COLLATE "C" NOT NULL REFERENCES issuers(key_id),
  shard         BIGINT NOT NULL CHECK (shard >= -1),
  holder        TEXT COLLATE "C" NOT NULL,
  leased_until  BIGINT NOT NULL,
  PRIMARY KEY (issuer_key_id, shard)
);
`,
  },
  {
    version: 15,
    name: "CA keys and KEK parameters in the database",
    // A PostgreSQL deployment keeps what every replica needs in the database, so replicas share
    // no filesystem (issue 17): the wrapped CA keys (the same texts as SQLite's keys/*.key.json,
    // still wrapped: the KEK itself is derived from the passphrase and is never stored) and the
    // KEK's scrypt parameters (kek.json: salt and check value, no secret). A SQLite CA keeps
    // both in its data dir as before and leaves these tables empty; `fleetca migrate-store`
    // copies the files into them.
    sqlite: `
CREATE TABLE ca_keys (
  name        TEXT PRIMARY KEY,
  record      TEXT NOT NULL,                     -- the wrapped key (signing/wrapped-key.ts)
  created_at  INTEGER NOT NULL                   -- unix ms
) STRICT;
CREATE TABLE kek_params (
  version     INTEGER PRIMARY KEY CHECK (version >= 1),
  params      TEXT NOT NULL,                     -- kek.json's text (signing/kek.ts)
  created_at  INTEGER NOT NULL
) STRICT;
`,
    postgres: `
CREATE TABLE ca_keys (
  name        TEXT COLLATE "C" PRIMARY KEY,
  record      TEXT COLLATE "C" NOT NULL,
  created_at  BIGINT NOT NULL
);
CREATE TABLE kek_params (
  version     BIGINT PRIMARY KEY CHECK (version >= 1),
  params      TEXT COLLATE "C" NOT NULL,
  created_at  BIGINT NOT NULL
);
`,
  },
];
