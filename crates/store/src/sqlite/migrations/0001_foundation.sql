-- Foundation: keyring, subjects with wrapped data keys, blind-indexed identities, sealed events and
-- profile values, and minimization's drop counters. No column holds a personal value in clear.

-- Wrapped random roots of the key hierarchy (the index root); the master key never comes here.
CREATE TABLE keyring (
    name       TEXT PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- A subject is a random id and its data key wrapped by the master key. Deleting the row destroys
-- the key and with it every value sealed under it. `known` says whether a userId points here;
-- `merged_into` links a subject whose person turned out to be another one.
CREATE TABLE subjects (
    id          TEXT PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    known       INTEGER NOT NULL DEFAULT 0,
    merged_into TEXT REFERENCES subjects (id),
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX subjects_merged_into ON subjects (merged_into);

-- Identifiers by blind index (keyed hash of kind and normalized value); the value itself is sealed.
CREATE TABLE identities (
    blind      BLOB PRIMARY KEY,
    kind       TEXT NOT NULL,
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX identities_subject ON identities (subject_id);

-- Events: the envelope (type, declared event name, times) in clear for ordering and retention; the
-- record (kept properties, traits, context) sealed under the subject's key. `dedupe` is a keyed
-- hash of the messageId.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    dedupe      BLOB NOT NULL,
    subject_id  TEXT NOT NULL REFERENCES subjects (id),
    type        TEXT NOT NULL,
    name        TEXT,
    timestamp   INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    sealed      BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX events_dedupe ON events (source, dedupe);
CREATE INDEX events_subject ON events (subject_id, timestamp);

-- Current profile values (identify traits), one sealed value per subject and declared path.
CREATE TABLE profile_values (
    subject_id TEXT NOT NULL REFERENCES subjects (id),
    path       TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (subject_id, path)
) STRICT, WITHOUT ROWID;

-- Minimization at work: how often each undeclared or refused path was dropped, per source.
CREATE TABLE dropped_properties (
    source    TEXT NOT NULL,
    path      TEXT NOT NULL,
    reason    TEXT NOT NULL,
    count     INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (source, path, reason)
) STRICT, WITHOUT ROWID;
