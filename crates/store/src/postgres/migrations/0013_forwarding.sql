-- Forwarding: one cursor per destination over committed events in arrival order (`received_at`,
-- then when each happened, then the event's key), so ingestion writes no extra row; the index below is what it adds to each
-- insert. Events newer than a few seconds are left for the next pass, so a transaction still
-- committing is not passed by. A cursor is claimed with a lease (one instance at a time per
-- destination) and moves only once the destination acknowledged. Counts are numbers only.
CREATE INDEX IF NOT EXISTS events_arrival ON events (received_at, timestamp, source, dedupe);

CREATE TABLE forward_cursors (
    destination     TEXT PRIMARY KEY,
    position_at     BIGINT NOT NULL,
    position_ts     BIGINT NOT NULL,
    position_source TEXT NOT NULL,
    position_dedupe BYTEA NOT NULL,
    lease           TEXT,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    not_before      BIGINT NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    failing_since   BIGINT,
    delivered       BIGINT NOT NULL DEFAULT 0,
    failures        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE forward_refusals (
    destination TEXT NOT NULL,
    reason      TEXT NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (destination, reason)
);
