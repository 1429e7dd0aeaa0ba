-- Links and sessions of the preference center and the console, by the random id their token
-- carries, so they can be ended on every instance: signing out ends one, a link opens once, and a
-- brand may end all of a person's. `holder` is a subject id, or an API key id for the console; no
-- personal data. Rows are forgotten once expired (a periodic job) and when their person is erased.
CREATE TABLE web_sessions (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    holder      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    opened_at   INTEGER,
    ended_at    INTEGER
) STRICT;
CREATE INDEX web_sessions_holder ON web_sessions (holder);
CREATE INDEX web_sessions_expires_at ON web_sessions (expires_at);
