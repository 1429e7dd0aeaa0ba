-- Foundation: the same data as the SQLite store (keyring, subjects with wrapped data keys,
-- blind-indexed identities, sealed events and profile values, drop counters), in SQL that
-- PostgreSQL, CockroachDB and YugabyteDB all accept: no sequences on hot tables (events are keyed
-- by source and dedupe key), no triggers, no extensions.

CREATE TABLE keyring (
    name       TEXT PRIMARY KEY,
    wrapped    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE subjects (
    id          TEXT PRIMARY KEY,
    wrapped_key BYTEA NOT NULL,
    known       BOOLEAN NOT NULL DEFAULT FALSE,
    merged_into TEXT REFERENCES subjects (id),
    created_at  BIGINT NOT NULL
);
CREATE INDEX subjects_merged_into ON subjects (merged_into);

CREATE TABLE identities (
    blind      BYTEA PRIMARY KEY,
    kind       TEXT NOT NULL,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX identities_subject ON identities (subject_id);

CREATE TABLE events (
    source      TEXT NOT NULL,
    dedupe      BYTEA NOT NULL,
    subject_id  TEXT NOT NULL REFERENCES subjects (id),
    type        TEXT NOT NULL,
    name        TEXT,
    timestamp   BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    sealed      BYTEA NOT NULL,
    PRIMARY KEY (source, dedupe)
);
CREATE INDEX events_subject ON events (subject_id, timestamp);

CREATE TABLE profile_values (
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    path       TEXT NOT NULL,
    sealed     BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (subject_id, path)
);

CREATE TABLE dropped_properties (
    source    TEXT NOT NULL,
    path      TEXT NOT NULL,
    reason    TEXT NOT NULL,
    count     BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (source, path, reason)
);
