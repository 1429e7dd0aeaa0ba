//! Reading the `[sources.*]` tables: the apps and SDKs that send events, each with a write key of
//! its own, the browser origins it may send from and its default jurisdiction.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, Problem, S, check_key, in_file_order};
use crate::catalog::{Jurisdiction, Source, SourceId};
use crate::secret::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    name: Option<String>,
    write_key: S<String>,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    allowed_origins: Vec<S<String>>,
    default_jurisdiction: Option<S<String>>,
    #[serde(default)]
    allow_sensitive: bool,
}

/// The sources, and each one's id by write key.
pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawSource>,
    jurisdictions: &[Jurisdiction],
) -> (Vec<Source>, HashMap<String, SourceId>) {
    let mut sources = Vec::new();
    let mut source_by_write_key = HashMap::new();
    if raw.is_empty() {
        checker.problems.push(Problem {
            line: 0,
            column: 0,
            message: "no [sources.*] declared: nothing could send events".into(),
        });
    }
    for (key, raw) in in_file_order(raw) {
        check_key(checker, &key, "source");
        let id = SourceId(u16::try_from(sources.len()).unwrap_or(u16::MAX));
        let write_key = raw.write_key.get_ref().trim().to_owned();
        if write_key.len() < 8 {
            checker.at(raw.write_key.span(), "write_key must be at least 8 characters");
        } else if source_by_write_key.insert(write_key.clone(), id).is_some() {
            checker.at(raw.write_key.span(), "this write_key is already used by another source");
        }
        if let Some(jurisdiction) = &raw.default_jurisdiction
            && !jurisdictions.iter().any(|declared| &declared.key == jurisdiction.get_ref())
        {
            checker.at(
                jurisdiction.span(),
                format!(
                    "unknown jurisdiction {:?}: declare it under [jurisdictions]",
                    jurisdiction.get_ref()
                ),
            );
        }
        for origin in &raw.allowed_origins {
            check_origin(checker, origin);
        }
        sources.push(Source {
            id,
            name: raw.name.unwrap_or_else(|| key.get_ref().clone()),
            key: key.into_inner(),
            write_key: Secret::new(write_key),
            strict: raw.strict,
            allowed_origins: raw.allowed_origins.into_iter().map(Spanned::into_inner).collect(),
            default_jurisdiction: raw.default_jurisdiction.map(Spanned::into_inner),
            allow_sensitive: raw.allow_sensitive,
        });
    }
    (sources, source_by_write_key)
}

fn check_origin(checker: &mut Checker<'_>, origin: &S<String>) {
    let origin_text = origin.get_ref();
    let well_formed = origin_text == "*"
        || ((origin_text.starts_with("http://") || origin_text.starts_with("https://"))
            && !origin_text.trim_end_matches('/').contains(|c: char| c.is_whitespace())
            && origin_text.matches('/').count() == 2);
    if !well_formed {
        checker.at(
            origin.span(),
            format!("{origin_text:?} is not an origin: write it as \"https://shop.example\" or \"*\""),
        );
    }
}
