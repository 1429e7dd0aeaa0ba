-- Consent provenance: whether who a ledger entry is about was proven (the brand's secret or API key,
-- the person's own session, an identity token) or only claimed by a public write key. Entries
-- recorded before were all recorded as proven.
ALTER TABLE consent_events ADD COLUMN verified BOOLEAN NOT NULL DEFAULT TRUE;
