-- One-time codes that sign a person in to the preference center without a link from the brand:
-- only the code's keyed hash is kept, with how often it was tried, until when it counts, and when it
-- was used (a code signs in once). `subject_id` is NULL when the address was not known: the page
-- asks for the code all the same, so it cannot tell who is a customer, and no code there ever works.
CREATE TABLE sign_in_codes (
    id          TEXT PRIMARY KEY,
    subject_id  TEXT,
    code_hash   BLOB NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT;
CREATE INDEX sign_in_codes_expires_at ON sign_in_codes (expires_at);
