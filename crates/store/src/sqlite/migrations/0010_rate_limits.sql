-- Rate limits every instance shares: one row per bucket and window, counting what was taken in it
-- (a sliding window weighs the previous row by its overlap). A bucket is named by a keyed hash of
-- the address or client it limits, never the value itself. Rows are deleted once they expire.
CREATE TABLE rate_limits (
    bucket       TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
) STRICT;
CREATE INDEX rate_limits_expires_at ON rate_limits (expires_at);
