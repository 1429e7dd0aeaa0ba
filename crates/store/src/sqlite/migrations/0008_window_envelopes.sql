-- Aggregate queries read a window's envelopes (who, through which source, which event, when) from
-- one covering index, in `(timestamp, seq)` order, without touching a row of the table: the
-- sealed records of millions of events are never read when a query needs no property, and the
-- cursor (`seq`, the rowid) costs nothing. It replaces `events_window`, which only ordered the scan
-- and sent each row back to the table: one index for every insert to maintain, as before.
DROP INDEX events_window;
CREATE INDEX events_envelope ON events (timestamp, seq, subject_id, source, type, name);
