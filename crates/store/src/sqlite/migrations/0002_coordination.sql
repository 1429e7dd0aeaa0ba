-- Coordination, as on PostgreSQL: a transactional outbox, leases for periodic jobs, and gapless
-- counters. On SQLite one process writes, so claims and leases are plain updates in the writer's
-- transaction; the tables and their semantics are the same so capabilities work on both backends.

CREATE TABLE outbox (
    id           TEXT PRIMARY KEY,
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    not_before   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    leased_until INTEGER,
    last_error   TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (topic, not_before);

CREATE TABLE jobs (
    name         TEXT PRIMARY KEY,
    next_run_at  INTEGER NOT NULL,
    leased_by    TEXT,
    leased_until INTEGER
) STRICT;

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
