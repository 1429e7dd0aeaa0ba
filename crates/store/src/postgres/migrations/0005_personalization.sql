-- Personalization's shared state, so that every instance recommends from the same model: the
-- brand's catalogue of items (not personal data, kept in clear), each subject's contribution to the
-- shared model (sealed under the subject's key by the caller), and which subjects' contributions must
-- be recomputed. Items and contributions take their versions from the `model` counter row, incremented
-- inside the writing transaction: writers serialize on the row until they commit, so versions become
-- visible in increasing order and readers follow them with "what changed after the version I have".

INSERT INTO counters (name, value) VALUES ('model', 0) ON CONFLICT (name) DO NOTHING;

-- Categories and attributes are JSON text (a list of strings, an object).
CREATE TABLE items (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    categories TEXT NOT NULL,
    sensitive  BOOLEAN NOT NULL,
    available  BOOLEAN NOT NULL,
    price      BIGINT,
    attributes TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    -- When this store wrote it (updated_at is the brand's).
    written_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX items_version ON items (version);

-- One row per subject that ever contributed: its latest state at its latest version. A removal keeps
-- the row with no `sealed` (a tombstone), so an instance that is behind still learns of it.
CREATE TABLE model_contributions (
    subject_id TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    sealed     BYTEA,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX model_contributions_version ON model_contributions (version);

-- Subjects whose contribution must be recomputed (their events or consent changed), and since when.
CREATE TABLE model_dirty (
    subject_id TEXT PRIMARY KEY,
    marked_at  BIGINT NOT NULL
);
CREATE INDEX model_dirty_marked_at ON model_dirty (marked_at);
