-- Forwarding: one cursor per destination over the log of committed events (`events.seq`, which a
-- single writer assigns in commit order), so ingestion writes nothing more. A cursor is claimed
-- with a lease by one worker at a time and moves only once the destination acknowledged. Counts
-- are numbers only: delivered, failed, refused per reason; `last_error` is what the destination
-- answered, never personal data.
CREATE TABLE forward_cursors (
    destination   TEXT PRIMARY KEY,
    position      INTEGER NOT NULL,
    lease         TEXT,
    lease_until   INTEGER NOT NULL DEFAULT 0,
    not_before    INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    failing_since INTEGER,
    delivered     INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE forward_refusals (
    destination TEXT NOT NULL,
    reason      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (destination, reason)
) STRICT, WITHOUT ROWID;

-- SQLite gives a new row the largest rowid plus one: once the newest events are deleted (a purge
-- after an erasure), their sequence numbers come round again. No cursor may then stand past the
-- newest event left, or it would skip the next ones. Deletes only; ingestion does not fire this.
CREATE TRIGGER forward_cursors_follow_deletes AFTER DELETE ON events
WHEN OLD.seq > COALESCE((SELECT MAX(seq) FROM events), 0)
BEGIN
    UPDATE forward_cursors SET position = COALESCE((SELECT MAX(seq) FROM events), 0)
    WHERE position > COALESCE((SELECT MAX(seq) FROM events), 0);
END;
