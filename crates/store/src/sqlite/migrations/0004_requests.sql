-- Data-subject requests: requests with their history and their deliveries to destinations; erasure
-- (subjects become tombstones with no key, legal holds under the deployment's legal-hold key,
-- suppressions as keyed hashes); and when each stored event must be trimmed or deleted (retention).

ALTER TABLE subjects ADD COLUMN erased_at INTEGER;
ALTER TABLE subjects ADD COLUMN purged_at INTEGER;

-- Retention: when the event's shortest-lived property expires (trim it then) and its longest-lived
-- one does (delete it then). NULL for events stored before this migration: the retention job
-- computes them.
ALTER TABLE events ADD COLUMN trim_at INTEGER;
ALTER TABLE events ADD COLUMN expires_at INTEGER;
CREATE INDEX events_trim_at ON events (trim_at);

CREATE TABLE requests (
    id                    TEXT PRIMARY KEY,
    -- NULL for a self-service request from someone not known, or lifting an erased person's
    -- suppression.
    subject_id            TEXT REFERENCES subjects (id),
    kind                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    -- 1 until the request is final: one open request per subject and kind.
    open                  INTEGER NOT NULL,
    source                TEXT NOT NULL,
    received_at           INTEGER NOT NULL,
    due_at                INTEGER NOT NULL,
    extension_reason      TEXT,
    completed_at          INTEGER,
    -- Parameters without personal values (JSON); a personal one (a rectified value) is sealed
    -- under the subject's key.
    details               TEXT NOT NULL,
    sealed                BLOB,
    -- Steps done, so a restarted request resumes where it stopped (JSON list).
    steps                 TEXT NOT NULL,
    verification          BLOB,
    verification_attempts INTEGER NOT NULL DEFAULT 0,
    verification_expires  INTEGER,
    lease_until           INTEGER,
    updated_at            INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX requests_open ON requests (subject_id, kind) WHERE open = 1;
CREATE INDEX requests_subject ON requests (subject_id, received_at);
CREATE INDEX requests_status ON requests (status, lease_until);

CREATE TABLE request_history (
    request_id TEXT NOT NULL REFERENCES requests (id),
    at         INTEGER NOT NULL,
    status     TEXT NOT NULL,
    note       TEXT NOT NULL
) STRICT;
CREATE INDEX request_history_request ON request_history (request_id, at);

-- What each destination was told, per request (or per consent receipt for consent changes).
CREATE TABLE deliveries (
    request_id      TEXT NOT NULL,
    destination     TEXT NOT NULL,
    message         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_error      TEXT,
    acknowledged_at INTEGER,
    PRIMARY KEY (request_id, destination)
) STRICT, WITHOUT ROWID;

CREATE TABLE delivery_attempts (
    request_id  TEXT NOT NULL,
    destination TEXT NOT NULL,
    at          INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT
) STRICT;
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (request_id, destination, at);

-- What the law requires to keep through an erasure, sealed under the legal-hold key (not the
-- person's), deleted at `retain_until`. `subject_id` is the erased tombstone: nothing leads to it.
CREATE TABLE legal_holds (
    id           TEXT PRIMARY KEY,
    subject_id   TEXT NOT NULL,
    source       TEXT NOT NULL,
    timestamp    INTEGER NOT NULL,
    categories   TEXT NOT NULL,
    retain_until INTEGER NOT NULL,
    sealed       BLOB NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX legal_holds_subject ON legal_holds (subject_id);
CREATE INDEX legal_holds_until ON legal_holds (retain_until);

-- Suppressed identifiers: blind indexes (keyed hashes) whose events are dropped at the door.
CREATE TABLE suppressions (
    blind      BLOB PRIMARY KEY,
    kind       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
