-- Consent, access and the audit log: subjects' attributes (jurisdiction, age group, restriction),
-- the append-only consent ledger and its signed receipts, hashed API keys, and the tamper-evident
-- audit log (entries, the Merkle frontier of the log, signed checkpoints).

ALTER TABLE subjects ADD COLUMN jurisdiction TEXT;
ALTER TABLE subjects ADD COLUMN minor BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE subjects ADD COLUMN restricted BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE consent_events (
    id           TEXT PRIMARY KEY,
    subject_id   TEXT NOT NULL REFERENCES subjects (id),
    purpose      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    method       TEXT NOT NULL,
    at           BIGINT NOT NULL,
    expires_at   BIGINT,
    version      INTEGER NOT NULL,
    source       TEXT,
    jurisdiction TEXT
);
CREATE INDEX consent_events_subject ON consent_events (subject_id);
CREATE INDEX consent_events_at ON consent_events (at, id);

-- One signed receipt per consent event (same id); pseudonymous, no personal values.
CREATE TABLE consent_receipts (
    id         TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX consent_receipts_subject ON consent_receipts (subject_id);

-- API keys: only the SHA-256 of the secret is stored; the key is shown once, at creation.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    hash       BYTEA NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

-- The audit log. `seq` is gapless (taken from counters 'audit' in the appending transaction);
-- `leaf` is the RFC 6962 leaf hash of `entry`; `subject` is a keyed pseudonym, for the person's own
-- access log.
CREATE TABLE audit_log (
    seq     BIGINT PRIMARY KEY,
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT,
    entry   TEXT NOT NULL,
    leaf    BYTEA NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);

-- The right edge of the Merkle tree over the log, so appending and signing stay O(log n).
CREATE TABLE audit_frontier (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    frontier BYTEA NOT NULL
);
INSERT INTO audit_frontier (id, frontier) VALUES (1, '\x0000000000000000');
INSERT INTO counters (name, value) VALUES ('audit', 0) ON CONFLICT (name) DO NOTHING;

-- Signed tree heads, exportable for outside parties to keep.
CREATE TABLE audit_checkpoints (
    size       BIGINT PRIMARY KEY,
    root       BYTEA NOT NULL,
    at         BIGINT NOT NULL,
    key_id     TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    signature  BYTEA NOT NULL
);
