//! Retention periods as the catalog writes them ("30d", "26w", "2y"), so every stored value has a
//! declared end of life that the retention job (and the privacy notice) can read; and how a stored
//! record ages: trimmed when its shortest-lived property expires, deleted when its longest-lived one
//! does.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::catalog::{Catalog, PropertyId};
use crate::minimize;

/// How long a value may be kept after it was collected, in whole days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Retention {
    days: u32,
}

/// The longest retention a catalog may declare (100 years), so arithmetic on it never overflows.
const MAX_DAYS: u32 = 36_525;

impl Retention {
    pub const fn days(days: u32) -> Retention {
        Retention { days }
    }

    pub fn as_days(self) -> u32 {
        self.days
    }

    pub fn as_millis(self) -> i64 {
        i64::from(self.days) * 86_400_000
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "retention must look like \"30d\", \"12w\" or \"2y\" (days, weeks or years, at most 100 years), not {0:?}"
)]
pub struct RetentionParseError(String);

impl FromStr for Retention {
    type Err = RetentionParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || RetentionParseError(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
        let (number, unit) = trimmed.split_at(split);
        let number: u32 = number.parse().map_err(|_| error())?;
        let per_unit = match unit {
            "d" => 1,
            "w" => 7,
            "y" => 365,
            _ => return Err(error()),
        };
        let days =
            number.checked_mul(per_unit).filter(|&days| days > 0 && days <= MAX_DAYS).ok_or_else(error)?;
        Ok(Retention { days })
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.days {
            days if days % 365 == 0 => write!(f, "{}y", days / 365),
            days if days % 7 == 0 => write!(f, "{}w", days / 7),
            days => write!(f, "{days}d"),
        }
    }
}

impl Retention {
    /// Plain words for people: "2 years", "30 days".
    pub fn in_words(self) -> String {
        let (count, unit) = match self.days {
            days if days % 365 == 0 => (days / 365, "year"),
            days if days % 7 == 0 => (days / 7, "week"),
            days => (days, "day"),
        };
        if count == 1 { format!("1 {unit}") } else { format!("{count} {unit}s") }
    }
}

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

    fn check(input: &str, expected: Option<u32>) {
        assert_eq!(input.parse::<Retention>().ok().map(Retention::as_days), expected, "{input}");
    }

    #[test]
    fn parses_days_weeks_years() {
        check("30d", Some(30));
        check("12w", Some(84));
        check("2y", Some(730));
        check(" 7d ", Some(7));
        check("0d", None);
        check("101y", None);
        check("3 months", None);
        check("d", None);
        check("-1d", None);
        check("99999999999d", None);
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(Retention::days(730).to_string(), "2y");
        assert_eq!(Retention::days(14).to_string(), "2w");
        assert_eq!(Retention::days(30).to_string(), "30d");
        assert_eq!(Retention::days(365).in_words(), "1 year");
        assert_eq!(Retention::days(30).in_words(), "30 days");
    }

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
