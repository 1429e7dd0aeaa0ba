//! Reading the `[subjects]` table: which declared traits tell a subject's country, region and
//! birthday, and the age at which they are an adult.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Checker, S};
use crate::catalog::{PropertyId, SubjectTraits};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubjects {
    country_trait: Option<S<String>>,
    region_trait: Option<S<String>>,
    birthday_trait: Option<S<String>>,
    adult_age: Option<S<u32>>,
}

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: Option<RawSubjects>,
    property_by_path: &HashMap<String, PropertyId>,
) -> SubjectTraits {
    let Some(raw) = raw else { return SubjectTraits::default() };
    let mut trait_path = |path: Option<S<String>>| {
        let path = path?;
        let inside_declared = property_by_path.contains_key(path.get_ref())
            || path
                .get_ref()
                .char_indices()
                .any(|(at, c)| c == '.' && property_by_path.contains_key(&path.get_ref()[..at]));
        if !inside_declared {
            checker.at(
                path.span(),
                format!(
                    "{} is not collected: declare it (or an object holding it) under [properties]",
                    path.get_ref()
                ),
            );
        }
        Some(path.into_inner())
    };
    let country = trait_path(raw.country_trait);
    let region = trait_path(raw.region_trait);
    let birthday = trait_path(raw.birthday_trait);
    let adult_age = match raw.adult_age {
        Some(age) if !(1..=30).contains(age.get_ref()) => {
            checker.at(age.span(), "adult_age must be between 1 and 30");
            18
        }
        Some(age) => age.into_inner(),
        None => 18,
    };
    SubjectTraits { country, region, birthday, adult_age }
}
