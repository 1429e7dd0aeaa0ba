//! How a stored record ages under the catalog's retention periods: trimmed when its shortest-lived
//! property expires, deleted when its longest-lived one does.

use serde_json::{Map, Value};

use crate::catalog::{Catalog, PropertyId};
use crate::minimize;
use crate::period::Retention;

/// When a record stored at `timestamp` holding `properties` must be trimmed (its shortest-lived
/// property expires) and deleted (its longest-lived one does). A record holding no declared property
/// lives as long as the shortest retention the catalog declares.
pub fn lifetime(catalog: &Catalog, properties: &[PropertyId], timestamp: i64) -> (i64, i64) {
    let ends =
        properties.iter().map(|&id| timestamp.saturating_add(catalog.property(id).retention.as_millis()));
    match (ends.clone().min(), ends.max()) {
        (Some(trim_at), Some(expires_at)) => (trim_at, expires_at),
        _ => {
            let shortest = catalog.properties().iter().map(|property| property.retention).min();
            let end = timestamp.saturating_add(shortest.map_or(0, Retention::as_millis));
            (end, end)
        }
    }
}

/// What became of a record at a retention pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trimmed {
    /// Nothing of it may be kept any longer: delete it.
    Expired,
    /// Kept, without what expired (`changed` says whether anything was removed), until the next
    /// trim and the final expiry.
    Kept { changed: bool, trim_at: i64, expires_at: i64 },
}

/// Removes from a record stored at `timestamp` the properties whose retention has passed at `now`
/// (and any the catalog no longer declares).
pub fn trim(catalog: &Catalog, record: &mut Map<String, Value>, timestamp: i64, now: i64) -> Trimmed {
    let before = record.clone();
    minimize::retain_declared(catalog, record);
    let all: Vec<PropertyId> = catalog.properties().iter().map(|property| property.id).collect();
    let present = minimize::withhold(catalog, &mut record.clone(), &all);
    let expired: Vec<PropertyId> = present
        .iter()
        .copied()
        .filter(|&id| timestamp.saturating_add(catalog.property(id).retention.as_millis()) <= now)
        .collect();
    if present.is_empty() {
        // Never held a declared property: the catalog's shortest retention.
        let (_, end) = lifetime(catalog, &[], timestamp);
        return if end <= now {
            Trimmed::Expired
        } else {
            Trimmed::Kept { changed: *record != before, trim_at: end, expires_at: end }
        };
    }
    let _ = minimize::withhold(catalog, record, &expired);
    let remaining: Vec<PropertyId> = present.into_iter().filter(|id| !expired.contains(id)).collect();
    if remaining.is_empty() {
        return Trimmed::Expired;
    }
    let (trim_at, expires_at) = lifetime(catalog, &remaining, timestamp);
    Trimmed::Kept { changed: *record != before, trim_at, expires_at }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_trimmed_property_by_property_then_deleted() {
        let catalog = Catalog::parse(Catalog::example_text()).unwrap();
        let day = 86_400_000;
        let retention = |path: &str| catalog.property_by_path(path).unwrap().retention.as_millis();
        let (ip, product) = (retention("context.ip"), retention("properties.product_id"));
        assert!(ip < product, "the example keeps IPs shorter than what was viewed");
        let id = |path: &str| catalog.property_by_path(path).unwrap().id;
        assert_eq!(lifetime(&catalog, &[id("context.ip"), id("properties.product_id")], 0), (ip, product));

        let record =
            serde_json::json!({"properties": {"product_id": "sku-1"}, "context": {"ip": "192.0.2.1"}});
        let Value::Object(record) = record else { unreachable!() };
        let mut young = record.clone();
        assert_eq!(
            trim(&catalog, &mut young, 0, ip - day),
            Trimmed::Kept { changed: false, trim_at: ip, expires_at: product }
        );
        let mut older = record.clone();
        assert_eq!(
            trim(&catalog, &mut older, 0, ip),
            Trimmed::Kept { changed: true, trim_at: product, expires_at: product }
        );
        assert_eq!(Value::Object(older), serde_json::json!({"properties": {"product_id": "sku-1"}}));
        let mut oldest = record;
        assert_eq!(trim(&catalog, &mut oldest, 0, product), Trimmed::Expired);

        let shortest =
            catalog.properties().iter().map(|property| property.retention.as_millis()).min().unwrap();
        assert_eq!(lifetime(&catalog, &[], 5), (5 + shortest, 5 + shortest));
        let mut bare = Map::new();
        assert_eq!(trim(&catalog, &mut bare, 0, shortest), Trimmed::Expired);
    }
}
