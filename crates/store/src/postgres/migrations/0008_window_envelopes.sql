-- Aggregate queries read a window's envelopes (who, through which source, which event, when) from
-- one covering index in `(timestamp, source, dedupe)` order: an index-only scan wherever the
-- visibility map is current (autovacuum keeps it so), without the sealed records. It replaces
-- `events_window`, which had the same key but sent each row back to the table: one index for
-- every insert to maintain, as before. Building it locks writes to `events` for as long as it
-- takes (see docs/deployment.md on upgrades).
DROP INDEX events_window;
CREATE INDEX events_envelope ON events (timestamp, source, dedupe) INCLUDE (subject_id, type, name);
