//! Reading the `[roles.*]` tables: what an API key's role may read, by purpose and category, which
//! requests it may make and what else it may do (`may`). Both lists are closed sets: a name not in
//! them is a mistake, reported where it stands.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, S, TaxonomyKind, check_key, check_taxonomy_key, in_file_order};
use crate::catalog::{Capability, RequestKind, Role};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    description: Option<String>,
    #[serde(default)]
    purposes: Vec<S<String>>,
    #[serde(default)]
    categories: Vec<S<String>>,
    #[serde(default)]
    requests: Vec<S<String>>,
    #[serde(default)]
    may: Vec<S<String>>,
}

pub(super) fn check(checker: &mut Checker<'_>, raw: BTreeMap<S<String>, RawRole>) -> Vec<Role> {
    in_file_order(raw)
        .into_iter()
        .map(|(name, raw)| {
            check_key(checker, &name, "role");
            for purpose in &raw.purposes {
                check_taxonomy_key(checker, purpose, TaxonomyKind::DataUse);
            }
            for category in &raw.categories {
                check_taxonomy_key(checker, category, TaxonomyKind::Category);
            }
            let requests = named(checker, &raw.requests, RequestKind::parse, "a request type", || {
                RequestKind::ALL.iter().map(|kind| kind.as_str()).collect()
            });
            let may = named(checker, &raw.may, Capability::parse, "a capability", || {
                Capability::ALL.iter().map(|capability| capability.as_str()).collect()
            });
            Role {
                name: name.into_inner(),
                description: raw.description,
                purposes: raw.purposes.into_iter().map(Spanned::into_inner).collect(),
                categories: raw.categories.into_iter().map(Spanned::into_inner).collect(),
                requests,
                may,
            }
        })
        .collect()
}

/// The members of a closed set a list names, each unknown name reported at its place.
fn named<T: PartialEq>(
    checker: &mut Checker<'_>,
    names: &[S<String>],
    parse: fn(&str) -> Option<T>,
    what: &str,
    known: impl Fn() -> Vec<&'static str>,
) -> Vec<T> {
    let mut found = Vec::new();
    for name in names {
        match parse(name.get_ref()) {
            Some(parsed) if !found.contains(&parsed) => found.push(parsed),
            Some(_) => {}
            None => checker.at(
                name.span(),
                format!("{:?} is not {what}: one of {}", name.get_ref(), known().join(", ")),
            ),
        }
    }
    found
}
