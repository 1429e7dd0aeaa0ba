//! Reading the `[[guardrails]]` rules: categories never used for some purposes, in some
//! jurisdictions, optionally only for minors. A rule that protects nothing is refused at load.

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, S, TaxonomyKind, check_taxonomy_key};
use crate::catalog::{Guardrail, Jurisdiction, Property};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuardrail {
    name: S<String>,
    description: Option<String>,
    #[serde(default)]
    categories: Vec<S<String>>,
    #[serde(default)]
    purposes: Vec<S<String>>,
    #[serde(default)]
    jurisdictions: Vec<S<String>>,
    minors: Option<bool>,
}

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: Vec<RawGuardrail>,
    jurisdictions: &[Jurisdiction],
    properties: &[Property],
) -> Vec<Guardrail> {
    let mut guardrails: Vec<Guardrail> = Vec::new();
    for raw in raw {
        let name = checker.non_empty(&raw.name, "guardrail name");
        if guardrails.iter().any(|existing| existing.name == name) {
            checker.at(raw.name.span(), format!("another guardrail is already named {name:?}"));
        }
        for category in &raw.categories {
            check_taxonomy_key(checker, category, TaxonomyKind::Category);
        }
        for purpose in &raw.purposes {
            check_taxonomy_key(checker, purpose, TaxonomyKind::DataUse);
        }
        for jurisdiction in &raw.jurisdictions {
            if !jurisdictions.iter().any(|declared| &declared.key == jurisdiction.get_ref()) {
                checker.at(
                    jurisdiction.span(),
                    format!(
                        "unknown jurisdiction {:?}: declare it under [jurisdictions]",
                        jurisdiction.get_ref()
                    ),
                );
            }
        }
        let guardrail = Guardrail {
            name,
            description: raw.description,
            categories: raw.categories.into_iter().map(Spanned::into_inner).collect(),
            purposes: raw.purposes.into_iter().map(Spanned::into_inner).collect(),
            jurisdictions: raw.jurisdictions.into_iter().map(Spanned::into_inner).collect(),
            minors: raw.minors,
        };
        check_effect(checker, &raw.name, &guardrail, properties);
        guardrails.push(guardrail);
    }
    guardrails
}

/// A guardrail must protect something, without forbidding everything.
fn check_effect(checker: &mut Checker<'_>, name: &S<String>, guardrail: &Guardrail, properties: &[Property]) {
    if guardrail.categories.is_empty() && guardrail.purposes.is_empty() {
        checker
            .at(name.span(), "a guardrail needs categories, purposes, or both: it would forbid everything");
    } else {
        // Analysable at load: a rule that matches no declared property and purpose is a typo or
        // stale, and would silently protect nothing.
        let matches_something = properties.iter().any(|property| {
            guardrail.applies_to_category(&property.category)
                && property.purposes.iter().any(|purpose| guardrail.applies_to_purpose(purpose))
        });
        if !matches_something {
            checker.at(
                name.span(),
                format!(
                    "guardrail {:?} matches no declared property and purpose, so it would protect nothing",
                    guardrail.name
                ),
            );
        }
    }
}
