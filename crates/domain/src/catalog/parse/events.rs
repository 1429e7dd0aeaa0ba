//! Reading the `[events."…"]` tables: the events the brand names, the feedback each one is for
//! recommendations, and the property that says which item it concerns.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::{Checker, S, in_file_order};
use crate::catalog::{EventSpec, Feedback, PropertyId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvent {
    description: Option<String>,
    feedback: Option<Feedback>,
    item: Option<S<String>>,
}

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawEvent>,
    property_by_path: &HashMap<String, PropertyId>,
) -> Vec<EventSpec> {
    in_file_order(raw)
        .into_iter()
        .map(|(name, raw)| {
            if name.get_ref().trim().is_empty() {
                checker.at(name.span(), "event name must not be empty");
            }
            let item = raw.item.as_ref().and_then(|item| {
                let found = property_by_path.get(item.get_ref()).copied();
                if found.is_none() {
                    checker.at(item.span(), format!("item property {:?} is not declared", item.get_ref()));
                }
                found
            });
            EventSpec { name: name.into_inner(), description: raw.description, feedback: raw.feedback, item }
        })
        .collect()
}
