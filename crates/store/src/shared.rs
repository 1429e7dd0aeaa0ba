//! What both backends do the same way below the traits: reading back fixed-size columns, the SQL
//! and rules that must not differ between them, ids, and the clock.

use tactful_vault::Blind;

use crate::{CodeOutcome, Result, StoreError, WrappedKeys};

/// A stored sign-in code as backends read it: subject, hash, tries, expiry, when it was used.
pub(crate) type CodeRow = (Option<String>, Vec<u8>, i64, i64, Option<i64>);

/// What trying a sign-in code does, the same on every backend: the outcome, and what to write —
/// `Some(true)` marks the code used, `Some(false)` counts a try, `None` leaves it alone.
pub(crate) fn judge_sign_in(
    row: Option<CodeRow>,
    hash: &[u8; 32],
    now: i64,
    max_attempts: u32,
) -> (CodeOutcome, Option<bool>) {
    let Some((subject, stored, attempts, expires_at, used_at)) = row else {
        return (CodeOutcome::Refused, None);
    };
    let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
    if used_at.is_some() || expires_at <= now || attempts >= max_attempts {
        return (CodeOutcome::Refused, None);
    }
    match subject {
        Some(subject) if stored.as_slice() == hash.as_slice() => (CodeOutcome::Accepted(subject), Some(true)),
        _ => (CodeOutcome::Wrong { tries_left: max_attempts - attempts - 1 }, Some(false)),
    }
}

/// Groups `(root, member, wrapped key)` rows by asked root, in root order (see
/// [`AnalyticsStore::family_keys`](crate::AnalyticsStore::family_keys)).
pub(crate) fn keys_of_members(
    roots: &[String],
    members: impl IntoIterator<Item = (String, String, Vec<u8>)>,
) -> Vec<(String, WrappedKeys)> {
    let asked: std::collections::HashSet<&str> = roots.iter().map(String::as_str).collect();
    let mut found: std::collections::BTreeMap<String, WrappedKeys> = Default::default();
    for (root, member, wrapped) in members {
        if !asked.contains(root.as_str()) {
            continue;
        }
        // A member asked for by id in one chunk of ids, and found through its root in another,
        // comes back twice.
        let family = found.entry(root).or_default();
        if !family.iter().any(|(known, _)| *known == member) {
            family.push((member, wrapped));
        }
    }
    found.into_iter().collect()
}

/// A blind index read back from the database.
pub(crate) fn blind_from(bytes: Vec<u8>) -> Result<Blind> {
    let array: [u8; 32] =
        bytes.try_into().map_err(|_| StoreError::Internal("a blind index is not 32 bytes".into()))?;
    Ok(Blind(array))
}

/// A dedupe key read back from the database.
pub(crate) fn dedupe_from(bytes: Vec<u8>) -> Result<[u8; 16]> {
    bytes.try_into().map_err(|_| StoreError::Internal("a dedupe key is not 16 bytes".into()))
}

/// Ids per query when many subjects are looked up at once (a bounded statement, a bounded answer).
pub(crate) const SUBJECTS_PER_QUERY: usize = 500;

/// Checks the numbers of a spend before any is written: a spend never gives budget back.
pub(crate) fn check_spend(epsilon_micro: i64, limit_micro: i64) -> Result<()> {
    if epsilon_micro < 0 || limit_micro < 0 {
        return Err(StoreError::Internal(format!(
            "a privacy budget spend of {epsilon_micro} µε against a limit of {limit_micro} µε: neither may be negative"
        )));
    }
    Ok(())
}

/// Unix milliseconds now.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// The statuses of requests not final yet, as SQL literals (see
/// [`RequestStore::open_requests`](crate::RequestStore::open_requests)).
pub(crate) const OPEN_STATUSES: &str = "'received', 'verifying', 'running', 'waiting_on_destinations'";

/// The lapsed consents (see [`ConsentStore::lapsed_consents`](crate::ConsentStore::lapsed_consents)),
/// the same SQL on every backend: `?1` is now, `?2` the limit (PostgreSQL rewrites them as `$1`,
/// `$2`). A consent is judged against its whole family's ledger, since a merged member's later
/// choice is the family's.
pub(crate) const LAPSED_CONSENTS_SQL: &str = "WITH family AS (
     SELECT c.id, c.purpose, c.kind, c.method, c.at, c.expires_at, c.version, c.source, c.jurisdiction,
            c.verified, COALESCE(s.merged_into, s.id) AS subject_id
     FROM consent_events c JOIN subjects s ON s.id = c.subject_id)
 SELECT id, purpose, kind, method, at, expires_at, version, source, jurisdiction, verified, subject_id FROM family c
 WHERE c.expires_at IS NOT NULL AND c.expires_at <= ?1 AND c.kind IN ('given', 'renewed')
   AND NOT EXISTS (SELECT 1 FROM family l WHERE l.subject_id = c.subject_id AND l.purpose = c.purpose
                   AND (l.at > c.at OR (l.at = c.at AND l.id > c.id)))
 ORDER BY c.expires_at, c.id LIMIT ?2";

/// The outbox topic of deliveries to destinations about consent changes (and of every delivery
/// queued before rights had a lane of their own).
pub const DELIVERY_TOPIC: &str = "delivery";
/// The outbox topic of deliveries about people's rights (erasure, restriction, rectification,
/// objection, suppression): a lane of their own, sent before consent changes, so an erasure never
/// waits behind a long queue of consent notices.
pub const RIGHTS_TOPIC: &str = "delivery.rights";
/// The outbox topic of sign-in codes, written with the code whether or not the address is known
/// and sent (or, for a stranger, discarded) by the worker after the answer.
pub const SIGN_IN_TOPIC: &str = "sign_in";
/// The delivery topics, in the order they are sent.
pub const DELIVERY_TOPICS: [&str; 2] = [RIGHTS_TOPIC, DELIVERY_TOPIC];

/// The outbox topic a delivery of `message` (`erase`, `consent_changed`, …) goes under.
pub(crate) fn delivery_topic(message: &str) -> &'static str {
    if message == "consent_changed" { DELIVERY_TOPIC } else { RIGHTS_TOPIC }
}

/// A random id for a consent event and its receipt.
pub fn new_receipt_id() -> String {
    tactful_vault::new_subject_id().replacen("sub_", "cr_", 1)
}

/// A random id for an outbox message (random, not a sequence: no hot spot on distributed engines).
/// A random id for a claim's lease, so only its holder can move what it claimed.
pub(crate) fn new_lease_id() -> String {
    tactful_vault::new_subject_id().replacen("sub_", "lease_", 1)
}

pub(crate) fn new_message_id() -> String {
    tactful_vault::new_subject_id().replacen("sub_", "msg_", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_statuses_are_those_not_final() {
        let open: Vec<String> = tactful_domain::request::RequestStatus::ALL
            .into_iter()
            .filter(|status| !status.is_final())
            .map(|status| format!("'{}'", status.as_str()))
            .collect();
        assert_eq!(OPEN_STATUSES, open.join(", "));
    }
}
