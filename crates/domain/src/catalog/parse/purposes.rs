//! Reading the `[purposes.*]` tables (fideslang data uses, explained to the customer) and the
//! `[consent_categories]` that map a consent platform's categories onto them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, S, TaxonomyKind, check_taxonomy_key, in_file_order};
use crate::catalog::Purpose;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPurpose {
    name: S<String>,
    description: S<String>,
    benefit: S<String>,
    version: Option<S<u32>>,
}

pub(super) fn check(checker: &mut Checker<'_>, raw: BTreeMap<S<String>, RawPurpose>) -> Vec<Purpose> {
    let mut purposes = Vec::new();
    for (key, raw) in in_file_order(raw) {
        check_taxonomy_key(checker, &key, TaxonomyKind::DataUse);
        let version = match raw.version {
            Some(version) if *version.get_ref() == 0 => {
                checker.at(version.span(), "version starts at 1");
                1
            }
            Some(version) => version.into_inner(),
            None => 1,
        };
        purposes.push(Purpose {
            name: checker.non_empty(&raw.name, "purpose name"),
            description: checker.non_empty(&raw.description, "purpose description"),
            benefit: checker.non_empty(&raw.benefit, "purpose benefit (what the customer gets from it)"),
            version,
            key: key.into_inner(),
        });
    }
    purposes
}

/// Consent category ids, as consent management platforms send them, and the declared purposes each
/// one means.
pub(super) fn check_consent_categories(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, Vec<S<String>>>,
    purposes: &[Purpose],
) -> Vec<(String, Vec<String>)> {
    mapped_purposes(checker, raw, purposes, "a consent category")
        .into_iter()
        .map(|(id, mapped)| (id.into_inner(), mapped))
        .collect()
}

/// Entries of a table that maps something (`what`) onto purposes, in file order; each must name at
/// least one purpose, and only declared ones.
pub(super) fn mapped_purposes(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, Vec<S<String>>>,
    purposes: &[Purpose],
    what: &str,
) -> Vec<(S<String>, Vec<String>)> {
    in_file_order(raw)
        .into_iter()
        .map(|(key, mapped)| {
            if mapped.is_empty() {
                checker.at(key.span(), format!("{what} must map to at least one purpose"));
            }
            for purpose in &mapped {
                if !purposes.iter().any(|declared| &declared.key == purpose.get_ref()) {
                    checker.at(
                        purpose.span(),
                        format!("purpose {:?} is not declared under [purposes]", purpose.get_ref()),
                    );
                }
            }
            (key, mapped.into_iter().map(Spanned::into_inner).collect())
        })
        .collect()
}
