-- Consent strings: a ledger entry read from an IAB TCF or GPP consent string keeps where it came
-- from, as JSON: the format (tcf or gpp), the string's SHA-256 (never the string), the CMP's id and
-- version, and the string's Created and LastUpdated times. Other entries have none.
ALTER TABLE consent_events ADD COLUMN provenance TEXT;
