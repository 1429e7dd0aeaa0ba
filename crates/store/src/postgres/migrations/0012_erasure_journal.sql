-- The erasure journal: what each erasure destroyed (the family's random subject ids, and the blind
-- indexes of what it suppressed), no personal value. Backups leave it out (`pg_dump
-- --exclude-table=erasure_journal`), so a database restored from a backup taken before an erasure
-- keeps the journal it had and is erased again when an instance opens it. It may already exist when
-- a restored dump predates this migration.
CREATE TABLE IF NOT EXISTS erasure_journal (
    at BIGINT NOT NULL,
    members TEXT NOT NULL,
    suppressed TEXT NOT NULL
);
