//! Reading the `[identity]` section: the merge rules (which identifier kinds link people, from which
//! sources, and at most how many of a kind one person holds).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Checker, S};
use crate::catalog::{Linking, Property, Source};
use crate::identity::IdentifierKind;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    link: Option<Vec<S<String>>>,
    #[serde(default)]
    link_from: BTreeMap<S<String>, Vec<S<String>>>,
    #[serde(default)]
    max_per_person: BTreeMap<S<String>, S<i64>>,
}

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: Option<RawIdentity>,
    sources: &[Source],
    properties: &[Property],
) -> Linking {
    let Some(raw) = raw else { return Linking::default() };
    let kind = |checker: &mut Checker<'_>, name: &S<String>| -> Option<IdentifierKind> {
        let parsed: Option<IdentifierKind> = name.get_ref().parse().ok();
        let known = parsed.as_ref().is_some_and(|kind| {
            matches!(kind, IdentifierKind::UserId | IdentifierKind::AnonymousId)
                || properties.iter().any(|property| property.identifier.as_ref() == Some(kind))
        });
        if !known {
            checker.at(
                name.span(),
                format!(
                    "{:?} is not an identifier kind of this catalog: user_id, anonymous_id, or one a property declares with `identifier`",
                    name.get_ref()
                ),
            );
            return None;
        }
        parsed
    };
    let link = raw.link.map(|names| names.iter().filter_map(|name| kind(checker, name)).collect());
    let mut link_from = BTreeMap::new();
    for (name, from) in raw.link_from {
        let Some(parsed) = kind(checker, &name) else { continue };
        for source in &from {
            if !sources.iter().any(|declared| &declared.key == source.get_ref()) {
                checker.at(
                    source.span(),
                    format!("unknown source {:?}: declare it under [sources]", source.get_ref()),
                );
            }
        }
        link_from.insert(parsed, from.into_iter().map(|source| source.into_inner()).collect());
    }
    let mut max_per_person = BTreeMap::new();
    for (name, limit) in raw.max_per_person {
        let Some(parsed) = kind(checker, &name) else { continue };
        match u32::try_from(*limit.get_ref()) {
            Ok(value) if value >= 1 => {
                max_per_person.insert(parsed, value);
            }
            _ => checker.at(limit.span(), "a limit is a whole number of at least 1"),
        }
    }
    Linking { link, link_from, max_per_person }
}
