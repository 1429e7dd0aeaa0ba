//! Reading the `[jurisdictions.*]` tables: the laws subjects fall under, each with its regime, the
//! deadlines its requests run on, and the countries and regions it covers (each in one only).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, Problem, S, check_key, in_file_order};
use crate::catalog::{Jurisdiction, Regime};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJurisdiction {
    name: S<String>,
    regime: Regime,
    request_deadline_days: Option<S<u32>>,
    request_extension_days: Option<S<u32>>,
    #[serde(default)]
    countries: Vec<S<String>>,
    channel_consent: Option<bool>,
    #[serde(default)]
    no_personal_data_in_analytics: bool,
}

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawJurisdiction>,
) -> Vec<Jurisdiction> {
    in_file_order(raw).into_iter().map(|(key, raw)| jurisdiction(checker, key, raw)).collect()
}

fn jurisdiction(checker: &mut Checker<'_>, key: S<String>, raw: RawJurisdiction) -> Jurisdiction {
    check_key(checker, &key, "jurisdiction");
    let default_deadline = match raw.regime {
        Regime::OptIn => 30,
        Regime::OptOut => 45,
    };
    let request_deadline_days = match raw.request_deadline_days {
        Some(days) if *days.get_ref() == 0 || *days.get_ref() > 365 => {
            checker.at(days.span(), "request_deadline_days must be between 1 and 365");
            default_deadline
        }
        Some(days) => days.into_inner(),
        None => default_deadline,
    };
    // GDPR art. 12(3): two further months; CCPA (11 CCR §7021): 45 more days, once.
    let default_extension = match raw.regime {
        Regime::OptIn => 60,
        Regime::OptOut => 45,
    };
    let request_extension_days = match raw.request_extension_days {
        Some(days) if *days.get_ref() > 365 => {
            checker.at(days.span(), "request_extension_days must be between 0 and 365");
            default_extension
        }
        Some(days) => days.into_inner(),
        None => default_extension,
    };
    for country in &raw.countries {
        let code = country.get_ref();
        let well_formed = match code.split_once('-') {
            Some((country, region)) => is_country(country) && !region.is_empty() && region.len() <= 3,
            None => is_country(code),
        };
        if !well_formed {
            checker
                .at(country.span(), format!("{code:?} is not a country code (\"DE\") or region (\"US-CA\")"));
        }
    }
    Jurisdiction {
        key: key.into_inner(),
        name: checker.non_empty(&raw.name, "jurisdiction name"),
        regime: raw.regime,
        request_deadline_days,
        request_extension_days,
        countries: raw.countries.into_iter().map(Spanned::into_inner).collect(),
        channel_consent: raw.channel_consent.unwrap_or(true),
        no_personal_data_in_analytics: raw.no_personal_data_in_analytics,
    }
}

/// A country or region listed under two jurisdictions would make a subject's law ambiguous.
pub(super) fn check_countries_once(checker: &mut Checker<'_>, jurisdictions: &[Jurisdiction]) {
    let mut seen_countries: HashMap<String, String> = HashMap::new();
    for jurisdiction in jurisdictions {
        for country in &jurisdiction.countries {
            if let Some(other) = seen_countries.insert(country.clone(), jurisdiction.key.clone()) {
                checker.problems.push(Problem {
                    line: 0,
                    column: 0,
                    message: format!(
                        "{country} is listed in both jurisdictions {other} and {}",
                        jurisdiction.key
                    ),
                });
            }
        }
    }
}

fn is_country(code: &str) -> bool {
    code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase())
}
