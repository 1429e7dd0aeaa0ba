//! Reading the `[roles.*]` tables: what an API key's role may read, by purpose and category.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, S, TaxonomyKind, check_key, check_taxonomy_key, in_file_order};
use crate::catalog::Role;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    description: Option<String>,
    #[serde(default)]
    purposes: Vec<S<String>>,
    #[serde(default)]
    categories: Vec<S<String>>,
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
            Role {
                name: name.into_inner(),
                description: raw.description,
                purposes: raw.purposes.into_iter().map(Spanned::into_inner).collect(),
                categories: raw.categories.into_iter().map(Spanned::into_inner).collect(),
            }
        })
        .collect()
}
