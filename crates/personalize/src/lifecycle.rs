//! Lifecycle stages from a person's consented activity, with the thresholds the brand declares in
//! its catalog: the input of next-best-message rules.

use crate::DAY_MS;

/// Where a person is in their relationship with the brand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Nothing consented to learn from yet.
    Unknown,
    /// First seen within the last `new_days`.
    New,
    /// Seen within the last `at_risk_days`.
    Active,
    /// Not seen for `at_risk_days`, but within `lapsed_days`.
    AtRisk,
    /// Not seen for `lapsed_days` or more.
    Lapsed,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Unknown, Stage::New, Stage::Active, Stage::AtRisk, Stage::Lapsed];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Unknown => "unknown",
            Stage::New => "new",
            Stage::Active => "active",
            Stage::AtRisk => "at_risk",
            Stage::Lapsed => "lapsed",
        }
    }

    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The brand's thresholds, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub new_days: u32,
    pub at_risk_days: u32,
    pub lapsed_days: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { new_days: 14, at_risk_days: 30, lapsed_days: 90 }
    }
}

/// The stage of someone first and last seen at these times (Unix ms), as of `now`.
pub fn stage(first_seen: Option<i64>, last_seen: Option<i64>, now: i64, thresholds: &Thresholds) -> Stage {
    let (Some(first), Some(last)) = (first_seen, last_seen) else { return Stage::Unknown };
    let days = |since: i64| (now - since).max(0) / DAY_MS;
    let idle = days(last);
    if idle >= i64::from(thresholds.lapsed_days) {
        Stage::Lapsed
    } else if idle >= i64::from(thresholds.at_risk_days) {
        Stage::AtRisk
    } else if days(first) < i64::from(thresholds.new_days) {
        Stage::New
    } else {
        Stage::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_the_thresholds() {
        let t = Thresholds::default();
        let now = 1000 * DAY_MS;
        let ago = |days: i64| Some(now - days * DAY_MS);
        assert_eq!(stage(None, None, now, &t), Stage::Unknown);
        assert_eq!(stage(ago(3), ago(1), now, &t), Stage::New);
        assert_eq!(stage(ago(200), ago(29), now, &t), Stage::Active);
        assert_eq!(stage(ago(200), ago(30), now, &t), Stage::AtRisk);
        assert_eq!(stage(ago(200), ago(90), now, &t), Stage::Lapsed);
        assert_eq!(stage(ago(95), ago(95), now, &t), Stage::Lapsed, "a first visit long ago is not new");
        assert!(Stage::ALL.iter().all(|s| Stage::parse(s.as_str()) == Some(*s)));
    }
}
