//! What both backends do the same way for personalization's shared state: spreading a batch's
//! versions over its writes, keeping one final state per key, and items' JSON columns.

use std::collections::HashMap;

use crate::{ItemRecord, Result, StoreError};

/// A subject's final state after a `put_contributions` call, at the version of its last operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContributionRow {
    pub subject: String,
    pub version: i64,
    /// `None`: removed.
    pub sealed: Option<Vec<u8>>,
}

/// Gives the writes, then the removals, the versions `first`, `first + 1`, … in that order, and
/// keeps each subject's last operation. Sorted by subject, so concurrent writers lock rows in the
/// same order.
pub(crate) fn contribution_rows(
    write: Vec<(String, Vec<u8>)>,
    remove: Vec<String>,
    first: i64,
) -> Vec<ContributionRow> {
    let operations = write
        .into_iter()
        .map(|(subject, sealed)| (subject, Some(sealed)))
        .chain(remove.into_iter().map(|subject| (subject, None)));
    let mut last: HashMap<String, ContributionRow> = HashMap::new();
    for ((subject, sealed), version) in operations.zip(first..) {
        last.insert(subject.clone(), ContributionRow { subject, version, sealed });
    }
    let mut rows: Vec<ContributionRow> = last.into_values().collect();
    rows.sort_by(|a, b| a.subject.cmp(&b.subject));
    rows
}

/// Gives the items the versions `first`, `first + 1`, … in order, and keeps each id's last record.
/// Sorted by id.
pub(crate) fn versioned_items(items: Vec<ItemRecord>, first: i64) -> Vec<ItemRecord> {
    let mut last: HashMap<String, ItemRecord> = HashMap::new();
    for (mut item, version) in items.into_iter().zip(first..) {
        item.version = version;
        last.insert(item.id.clone(), item);
    }
    let mut items: Vec<ItemRecord> = last.into_values().collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    items
}

/// The first of `count` versions ending at `last`.
pub(crate) fn first_version(last: i64, count: usize) -> i64 {
    last - i64::try_from(count).unwrap_or(i64::MAX) + 1
}

/// How many versions a batch takes, for the counter.
pub(crate) fn version_count(count: usize) -> Result<i64> {
    i64::try_from(count).map_err(|_| StoreError::Internal("too many model changes in one call".into()))
}

/// Each subject once, sorted: duplicate keys in one upsert would fail on PostgreSQL, and a fixed
/// order keeps concurrent writers from locking rows in opposite orders.
pub(crate) fn distinct_sorted(mut subjects: Vec<String>) -> Vec<String> {
    subjects.sort_unstable();
    subjects.dedup();
    subjects
}

/// An item's categories and attributes as stored (JSON text).
pub(crate) fn item_json(item: &ItemRecord) -> (String, String) {
    (serde_json::Value::from(item.categories.clone()).to_string(), item.attributes.to_string())
}

/// Reads an item's JSON columns back.
pub(crate) fn parse_item_json(
    categories: &str,
    attributes: &str,
) -> Result<(Vec<String>, serde_json::Value)> {
    let categories = serde_json::from_str(categories).map_err(|error| {
        StoreError::Internal(format!("an item's categories are not a JSON list: {error}"))
    })?;
    let attributes = serde_json::from_str(attributes)
        .map_err(|error| StoreError::Internal(format!("an item's attributes are not JSON: {error}")))?;
    Ok((categories, attributes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(write: &[(&str, u8)], remove: &[&str], expected: &[(&str, i64, Option<u8>)]) {
        let write = write.iter().map(|(subject, byte)| ((*subject).to_owned(), vec![*byte])).collect();
        let remove = remove.iter().map(|subject| (*subject).to_owned()).collect();
        let rows = contribution_rows(write, remove, 10);
        let found: Vec<(&str, i64, Option<u8>)> = rows
            .iter()
            .map(|row| (row.subject.as_str(), row.version, row.sealed.as_ref().map(|sealed| sealed[0])))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn each_subject_keeps_its_last_operation_at_its_version() {
        check(&[("b", 1), ("a", 2)], &[], &[("a", 11, Some(2)), ("b", 10, Some(1))]);
        check(&[("a", 1), ("a", 2)], &[], &[("a", 11, Some(2))]);
        // Writes first, then removals: written and removed ends up removed.
        check(&[("a", 1), ("b", 2)], &["a", "c"], &[("a", 12, None), ("b", 11, Some(2)), ("c", 13, None)]);
        check(&[], &[], &[]);
        assert_eq!(first_version(13, 4), 10);
    }
}
