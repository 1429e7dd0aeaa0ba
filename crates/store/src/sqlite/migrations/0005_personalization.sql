-- Personalization's shared state, so that every instance recommends from the same model: the
-- brand's catalogue of items (not personal data, kept in clear), each subject's contribution to the
-- shared model (sealed under the subject's key by the caller), and which subjects' contributions must
-- be recomputed. Items and contributions take their versions from the `model` counter, so one version
-- order covers both and readers follow it with "what changed after the version I have".

INSERT INTO counters (name, value) VALUES ('model', 0) ON CONFLICT (name) DO NOTHING;

-- Categories and attributes are JSON (a list of strings, an object).
CREATE TABLE items (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    categories TEXT NOT NULL,
    sensitive  INTEGER NOT NULL,
    available  INTEGER NOT NULL,
    price      INTEGER,
    attributes TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    -- When this store wrote it (updated_at is the brand's).
    written_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX items_version ON items (version);

-- One row per subject that ever contributed: its latest state at its latest version. A removal keeps
-- the row with no `sealed` (a tombstone), so an instance that is behind still learns of it.
CREATE TABLE model_contributions (
    subject_id TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    sealed     BLOB,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX model_contributions_version ON model_contributions (version);

-- Subjects whose contribution must be recomputed (their events or consent changed), and since when.
CREATE TABLE model_dirty (
    subject_id TEXT PRIMARY KEY,
    marked_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX model_dirty_marked_at ON model_dirty (marked_at);
