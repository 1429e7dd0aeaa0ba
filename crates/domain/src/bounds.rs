//! The ranges every number a caller or a catalog chooses must fall in, in one place, so no door can
//! ask for work without limit: the ε an answer spends, the window a query or export reads, the
//! dimensions it groups by, the rows one person lends a dataset. Each check says the allowed range
//! in its message.
//!
//! Why ε has a floor: an answer's noise grows as 1/ε. Below [`EPSILON_MIN`] the noise on a count
//! of people is already in the thousands for the default bounds (at 0.01, the 95% interval of a
//! count is about ±600 with 20 rows per person), so an answer would be only noise, and the search
//! for the release threshold of groups grows without bound as ε approaches 0 (at 1e-300 it never
//! ends). Nothing useful lies below the floor; everything harmful does. (`tactful-insights` and
//! `tactful-personalize`, which know no catalog, refuse a noise scale above 1e9 themselves as a
//! backstop, far beyond what these ranges allow.)

/// The smallest ε an answer (or a budget per period, or a model release) may spend.
pub const EPSILON_MIN: f64 = 0.01;
/// The largest ε one answer may spend (never more than its dataset's budget per period either).
pub const EPSILON_MAX: f64 = 10.0;
/// The longest window a query or export reads, in days.
pub const WINDOW_MAX_DAYS: i64 = 366;
/// The most dimensions a query groups by (each at most once).
pub const GROUP_BY_MAX: usize = 4;
/// The most rows one person may lend a noisy dataset (`rows_per_person`).
pub const ROWS_PER_PERSON_MAX: u32 = 1_000;

/// The δ of a Gaussian model release, unless the catalog says otherwise: at most a tenth of
/// 1/people for every shop up to a million people (where this release is the useful one), and the
/// δ the noisy-threshold release spends, so choosing the Gaussian one never weakens a guarantee.
pub const DELTA_DEFAULT: f64 = 1e-7;
/// The range of that δ: above 1e-5 it is no longer small beside one person in a shop of
/// ten thousand; below 1e-12 the noise keeps growing (as √ln(1/δ)) for no practical gain.
pub const DELTA_MIN: f64 = 1e-12;
pub const DELTA_MAX: f64 = 1e-5;

const DAY_MS: i64 = 86_400_000;

/// A number as a message shows it: tiny ones in exponent form (`1e-300`, not 300 zeros).
pub fn shown(value: f64) -> String {
    if value != 0.0 && value.abs() < 1e-4 { format!("{value:e}") } else { format!("{value}") }
}

/// The ε one answer of a dataset whose budget per period is `budget` may spend: at least
/// [`EPSILON_MIN`], at most [`EPSILON_MAX`] and at most the budget.
pub fn epsilon(asked: f64, budget: f64) -> Result<f64, String> {
    let most = EPSILON_MAX.min(budget);
    if asked.is_finite() && (EPSILON_MIN..=most).contains(&asked) {
        Ok(asked)
    } else {
        Err(format!("epsilon {} is out of range (allowed: {EPSILON_MIN} to {most})", shown(asked)))
    }
}

/// A window `[from, to)` of Unix milliseconds: not empty, at most [`WINDOW_MAX_DAYS`] long.
pub fn window(from: i64, to: i64) -> Result<(), String> {
    if from >= to {
        return Err("the window is empty: from must be before to".into());
    }
    if to.saturating_sub(from) > WINDOW_MAX_DAYS * DAY_MS {
        let days = to.saturating_sub(from).saturating_add(DAY_MS - 1) / DAY_MS;
        return Err(format!(
            "the window spans {days} days (allowed: 1 millisecond to {WINDOW_MAX_DAYS} days)"
        ));
    }
    Ok(())
}

/// How many dimensions a query groups by.
pub fn group_by(count: usize) -> Result<(), String> {
    if count > GROUP_BY_MAX {
        return Err(format!("group_by names {count} dimensions (allowed: 0 to {GROUP_BY_MAX}, each once)"));
    }
    Ok(())
}

/// A catalog's ε (a dataset's budget per period, or a model release's): `None` when fine, else
/// what is wrong.
pub fn catalog_epsilon(value: f64, what: &str) -> Option<String> {
    (!(value.is_finite() && value >= EPSILON_MIN)).then(|| {
        format!(
            "{what} must be a number of at least {EPSILON_MIN}, not {} (below it an answer is only noise)",
            shown(value)
        )
    })
}

/// A catalog's δ (a Gaussian model release's): `None` when fine, else what is wrong.
pub fn catalog_delta(value: f64) -> Option<String> {
    (!(value.is_finite() && (DELTA_MIN..=DELTA_MAX).contains(&value))).then(|| {
        format!(
            "delta must be {} to {}, not {} (the chance the guarantee fails outright)",
            shown(DELTA_MIN),
            shown(DELTA_MAX),
            shown(value)
        )
    })
}

/// A dataset's `rows_per_person`: `None` when fine, else what is wrong.
pub fn rows_per_person(value: u32) -> Option<String> {
    (!(1..=ROWS_PER_PERSON_MAX).contains(&value))
        .then(|| format!("rows_per_person must be 1 to {ROWS_PER_PERSON_MAX}, not {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_is_refused_outside_its_range_with_the_range_named() {
        for asked in [1e-300, 1e-12, 0.009, -1.0, 0.0, f64::NAN, f64::INFINITY, 10.5] {
            let error = epsilon(asked, 100.0).unwrap_err();
            assert!(error.contains("allowed: 0.01 to 10"), "{asked}: {error}");
        }
        assert_eq!(epsilon(2.5, 2.0).unwrap_err(), "epsilon 2.5 is out of range (allowed: 0.01 to 2)");
        assert_eq!(epsilon(0.01, 2.0), Ok(0.01));
        assert_eq!(epsilon(2.0, 2.0), Ok(2.0));
    }

    #[test]
    fn windows_are_at_most_a_leap_year() {
        assert!(window(0, WINDOW_MAX_DAYS * DAY_MS).is_ok());
        let error = window(0, 367 * DAY_MS).unwrap_err();
        assert!(error.contains("367 days") && error.contains("366 days"), "{error}");
        assert!(window(5, 5).is_err());
        assert!(window(i64::MIN, i64::MAX).is_err(), "no overflow");
    }

    #[test]
    fn group_by_and_rows_per_person_have_their_ranges() {
        assert!(group_by(4).is_ok());
        assert!(group_by(5).unwrap_err().contains("0 to 4"));
        assert!(rows_per_person(1000).is_none() && rows_per_person(0).is_some());
        assert!(rows_per_person(1001).unwrap().contains("1 to 1000"));
        assert!(catalog_epsilon(0.01, "epsilon").is_none());
        assert!(catalog_epsilon(0.009, "epsilon").unwrap().contains("at least 0.01"));
        assert!(
            catalog_delta(1e-7).is_none() && catalog_delta(1e-5).is_none() && catalog_delta(1e-12).is_none()
        );
        for wrong in [0.0, 1e-13, 2e-5, 0.5, f64::NAN] {
            assert!(catalog_delta(wrong).unwrap().contains("1e-12 to 1e-5"), "{wrong}");
        }
    }
}
