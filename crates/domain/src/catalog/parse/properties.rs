//! Reading the `[properties."…"]` tables: each path the brand collects, its fideslang category, the
//! purposes it serves, how long it is kept and whether it identifies someone. Paths must be made of
//! field names and may not nest inside one another.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, S, TaxonomyKind, check_taxonomy_key, in_file_order};
use crate::catalog::{Property, PropertyId, Purpose, looks_like_field_name};
use crate::identity::IdentifierKind;
use crate::period::Retention;
use crate::taxonomy::{self, Taxonomy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProperty {
    category: S<String>,
    purposes: S<Vec<S<String>>>,
    retention: S<String>,
    #[serde(default)]
    sensitive: bool,
    identifier: Option<S<String>>,
    description: Option<String>,
}

/// The properties, each one's id by path, and every proper prefix of a declared path.
pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawProperty>,
    purposes: &[Purpose],
) -> (Vec<Property>, HashMap<String, PropertyId>, HashSet<String>) {
    let mut properties = Vec::new();
    let mut property_by_path = HashMap::new();
    let mut path_spans = Vec::new();
    for (path, raw) in in_file_order(raw) {
        check_path(checker, &path);
        let id = PropertyId(u16::try_from(properties.len()).unwrap_or(u16::MAX));
        property_by_path.insert(path.get_ref().clone(), id);
        path_spans.push((path.get_ref().clone(), path.span()));
        properties.push(property(checker, id, path.into_inner(), raw, purposes));
    }
    let path_prefixes = check_nesting(checker, &path_spans, &property_by_path);
    (properties, property_by_path, path_prefixes)
}

fn property(
    checker: &mut Checker<'_>,
    id: PropertyId,
    path: String,
    raw: RawProperty,
    purposes: &[Purpose],
) -> Property {
    let taxonomy = Taxonomy::builtin();
    check_taxonomy_key(checker, &raw.category, TaxonomyKind::Category);
    let category = raw.category.get_ref();
    if taxonomy.is_sensitive_category(category) && !raw.sensitive {
        checker.at(
            raw.category.span(),
            format!(
                "{category} is a sensitive category: mark this property `sensitive = true` to collect it"
            ),
        );
    }
    if raw.purposes.get_ref().is_empty() {
        checker.at(raw.purposes.span(), "a property must serve at least one purpose");
    }
    for purpose in raw.purposes.get_ref() {
        if !purposes.iter().any(|declared: &Purpose| &declared.key == purpose.get_ref()) {
            let hint = taxonomy::suggest(purpose.get_ref(), purposes.iter().map(|p| p.key.as_str()))
                .map(|key| format!(" (did you mean {key:?}?)"))
                .unwrap_or_default();
            checker.at(
                purpose.span(),
                format!("purpose {:?} is not declared under [purposes]{hint}", purpose.get_ref()),
            );
        }
    }
    let retention = match raw.retention.get_ref().parse::<Retention>() {
        Ok(retention) => retention,
        Err(error) => {
            checker.at(raw.retention.span(), error.to_string());
            Retention::days(1)
        }
    };
    let identifier =
        raw.identifier.as_ref().and_then(|kind| match kind.get_ref().parse::<IdentifierKind>() {
            Ok(IdentifierKind::UserId | IdentifierKind::AnonymousId) => {
                checker.at(kind.span(), "userId and anonymousId are identifiers already; pick another name");
                None
            }
            Ok(kind) => Some(kind),
            Err(error) => {
                checker.at(kind.span(), error.to_string());
                None
            }
        });
    Property {
        id,
        category: category.clone(),
        purposes: raw.purposes.into_inner().into_iter().map(Spanned::into_inner).collect(),
        retention,
        sensitive: raw.sensitive,
        identifier,
        description: raw.description,
        path,
    }
}

/// A declared path inside another declared path would make it ambiguous which declaration
/// (category, purposes, retention) governs the inner value. Returns every proper prefix of a
/// declared path, so the minimizer knows when to descend into an object.
fn check_nesting(
    checker: &mut Checker<'_>,
    path_spans: &[(String, Range<usize>)],
    property_by_path: &HashMap<String, PropertyId>,
) -> HashSet<String> {
    let mut path_prefixes = HashSet::new();
    for (path, span) in path_spans {
        for (at, c) in path.char_indices() {
            let prefix = match c {
                '.' | '[' => &path[..at],
                ']' => &path[..=at],
                _ => continue,
            };
            if property_by_path.contains_key(prefix) {
                checker
                    .at(span.clone(), format!("{path} lies inside {prefix}, which is declared as a whole"));
            }
            path_prefixes.insert(prefix.to_owned());
        }
    }
    path_prefixes
}

fn check_path(checker: &mut Checker<'_>, path: &S<String>) {
    let text = path.get_ref();
    let Some((root, rest)) = text.split_once('.') else {
        checker.at(path.span(), format!("{text:?} must start with traits., properties. or context."));
        return;
    };
    if !matches!(root, "traits" | "properties" | "context") {
        checker.at(path.span(), format!("{text:?} must start with traits., properties. or context."));
        return;
    }
    if matches!(text.as_str(), "context.consent" | "context.consentManagement")
        || text.starts_with("context.consent.")
        || text.starts_with("context.consentManagement.")
    {
        checker
            .at(path.span(), format!("{text} carries consent signals and cannot be declared as a property"));
        return;
    }
    for segment in rest.split('.') {
        let name = segment.strip_suffix("[]").unwrap_or(segment);
        if !looks_like_field_name(name) {
            checker.at(
                path.span(),
                format!(
                    "{text:?} has a segment {segment:?} that is not a field name (letters, digits, '_', '-', '$', \
                     starting with a letter)"
                ),
            );
            return;
        }
    }
}
