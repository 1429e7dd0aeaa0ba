-- Private analytics: what each dataset has spent of its privacy budget per period, and an index for
-- the aggregate queries, which scan every subject's events of a time window in
-- `(timestamp, source, dedupe)` order.

-- Spent ε in millionths (exact integers). The limit is not stored: it is the catalog's, given with
-- every spend, so a changed limit applies at once. A spend is checked and written in the writer's
-- transaction with its audit entries.
CREATE TABLE privacy_budget (
    dataset      TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    spent_micro  INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (dataset, period_start)
) STRICT, WITHOUT ROWID;

CREATE INDEX events_window ON events (timestamp, source, dedupe);
