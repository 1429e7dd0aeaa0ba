-- Consent, access and the audit log: subjects' attributes (jurisdiction, age group, restriction),
-- the append-only consent ledger and its signed receipts, hashed API keys, and the tamper-evident
-- audit log (entries, the Merkle frontier of the log, signed checkpoints).

ALTER TABLE subjects ADD COLUMN jurisdiction TEXT;
ALTER TABLE subjects ADD COLUMN minor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subjects ADD COLUMN restricted INTEGER NOT NULL DEFAULT 0;

CREATE TABLE consent_events (
    id           TEXT PRIMARY KEY,
    subject_id   TEXT NOT NULL REFERENCES subjects (id),
    purpose      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    method       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    expires_at   INTEGER,
    version      INTEGER NOT NULL,
    source       TEXT,
    jurisdiction TEXT
) STRICT;
CREATE INDEX consent_events_subject ON consent_events (subject_id);
CREATE INDEX consent_events_at ON consent_events (at, id);

-- One signed receipt per consent event (same id); pseudonymous, no personal values.
CREATE TABLE consent_receipts (
    id         TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    created_at INTEGER NOT NULL,
    body       TEXT NOT NULL
) STRICT;
CREATE INDEX consent_receipts_subject ON consent_receipts (subject_id);

-- API keys: only the SHA-256 of the secret is stored; the key is shown once, at creation.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    hash       BLOB NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) STRICT;

-- The audit log. `seq` is gapless (taken from counters 'audit' in the appending transaction);
-- `leaf` is the RFC 6962 leaf hash of `entry`; `subject` is a keyed pseudonym, for the person's own
-- access log.
CREATE TABLE audit_log (
    seq     INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT,
    entry   TEXT NOT NULL,
    leaf    BLOB NOT NULL
) STRICT;
CREATE INDEX audit_log_subject ON audit_log (subject, seq);

-- The right edge of the Merkle tree over the log, so appending and signing stay O(log n).
CREATE TABLE audit_frontier (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    frontier BLOB NOT NULL
) STRICT;
INSERT INTO audit_frontier (id, frontier) VALUES (1, x'0000000000000000');
INSERT INTO counters (name, value) VALUES ('audit', 0) ON CONFLICT (name) DO NOTHING;

-- Signed tree heads, exportable for outside parties to keep.
CREATE TABLE audit_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    at         INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL
) STRICT;
