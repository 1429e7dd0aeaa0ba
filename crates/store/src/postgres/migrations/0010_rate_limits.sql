-- Rate limits every instance shares: one row per bucket and window, counting what was taken in it
-- (a sliding window weighs the previous row by its overlap). A bucket is named by a keyed hash of
-- the address or client it limits, never the value itself. Rows are deleted once they expire.
CREATE TABLE rate_limits (
    bucket       TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limits_expires_at ON rate_limits (expires_at);
