//! Retention periods as the catalog writes them ("30d", "26w", "2y"), so every stored value has a
//! declared end of life that the retention job (and the privacy notice) can read. A leaf: the
//! catalog declares periods and `retention` applies them, so the type belongs to neither.

use std::fmt;
use std::str::FromStr;

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
}
