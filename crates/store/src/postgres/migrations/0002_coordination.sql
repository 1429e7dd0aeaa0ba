-- Coordination between server instances, for the capabilities that need it: a transactional outbox
-- (messages written with the change that caused them, claimed by one instance at a time with
-- FOR UPDATE SKIP LOCKED), leases for periodic jobs (no leader: whoever finds a job due takes its
-- lease), and counters that stay gapless (incremented inside the transaction that uses the value).

CREATE TABLE outbox (
    id           TEXT PRIMARY KEY,
    topic        TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    not_before   BIGINT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    leased_until BIGINT,
    last_error   TEXT
);
CREATE INDEX outbox_due ON outbox (topic, not_before);

CREATE TABLE jobs (
    name         TEXT PRIMARY KEY,
    next_run_at  BIGINT NOT NULL,
    leased_by    TEXT,
    leased_until BIGINT
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
