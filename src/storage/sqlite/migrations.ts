/**
 * Versioned schema migrations, applied in order inside one transaction each. A migration is never
 * edited after it ships; later changes are new entries. Revocation fields and per-issuer indexes
 * are here from v1 so CRL/OCSP can read them without a rewrite.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "issuers, certificates, used tokens, idempotency keys, provisioner keys",
    sql: `
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
  },
  {
    version: 2,
    name: "certificates.renewed_from",
    // The serial a renewal replaced (POST /v1/renew); NULL for a first issuance and for every
    // row written before v2. Readers must tolerate a v1 file opened read-only (no such column).
    sql: `ALTER TABLE certificates ADD COLUMN renewed_from TEXT;`,
  },
  {
    version: 3,
    name: "revocation log, CRL state",
    // revocation_log: every revocation in commit order, written in the same transaction as the
    // status flip. The daemon follows it to re-sign OCSP and CRLs within seconds, including for
    // revocations made by another process (`fleetca revoke`). crl_state: the last CRL per issuer;
    // crl_number only goes up, across restarts (RFC 5280 §5.2.3).
    sql: `
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
  },
  {
    // v5 (v4 is the CRL shards migration being written alongside; renumber on merge if needed).
    version: 5,
    name: "pre-signed OCSP answers",
    // One pre-signed OCSPResponse per certificate (SHA-1 CertID), shared by every process that
    // serves /ocsp. status = the certificate status it was signed for; refresh_at = half-life.
    // No foreign key: rows are written in large batches by the pre-signer and are disposable.
    sql: `
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
  },
];
