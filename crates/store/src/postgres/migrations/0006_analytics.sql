-- Private analytics: what each dataset has spent of its privacy budget per period, and an index for
-- the aggregate queries, which scan every subject's events of a time window in
-- `(timestamp, source, dedupe)` order.

-- Spent ε in millionths (exact integers). The limit is not stored: it is the catalog's, given with
-- every spend, so a changed limit applies at once. A spend updates the row conditionally
-- (`spent_micro <= limit - ε`) in the transaction that writes its audit entries; concurrent spends
-- from any instance serialize on the row.
CREATE TABLE privacy_budget (
    dataset      TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    spent_micro  BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (dataset, period_start)
);

CREATE INDEX events_window ON events (timestamp, source, dedupe);
