//! Reading the `[analytics]` section: the purpose aggregates serve, and the datasets analysts may
//! query — their dimensions, clamped measures, minimum group size (k) and privacy budget.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Checker, S, check_key, in_file_order};
use crate::bounds;
use crate::catalog::{Analytics, Dataset, Dimension, Generalize, Measure, Property, PropertyId, Purpose};
use crate::period::Retention;
use crate::taxonomy::covers;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalytics {
    purpose: S<String>,
    k: Option<S<u32>>,
    #[serde(default)]
    datasets: BTreeMap<S<String>, RawDataset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    description: Option<String>,
    k: Option<S<u32>>,
    epsilon: Option<S<f64>>,
    period: Option<S<String>>,
    rows_per_person: Option<S<u32>>,
    dimensions: Vec<S<String>>,
    #[serde(default)]
    measures: BTreeMap<S<String>, S<[f64; 2]>>,
    /// How exports coarsen quasi-identifiers: property path → `prefix:N`, `round:N`, `month`, `year`.
    #[serde(default)]
    generalize: BTreeMap<S<String>, S<String>>,
}

/// The fewest distinct people a shown group may have when the catalog does not say.
pub const DEFAULT_K: u32 = 10;

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: Option<RawAnalytics>,
    purposes: &[Purpose],
    properties: &[Property],
    lifecycle_declared: bool,
) -> Option<Analytics> {
    let raw = raw?;
    let purpose = raw.purpose.get_ref().clone();
    if !purposes.iter().any(|declared| declared.key == purpose) {
        checker.at(raw.purpose.span(), format!("purpose {purpose:?} is not declared under [purposes]"));
    } else if !covers("analytics", &purpose) {
        checker.at(raw.purpose.span(), "aggregates serve an analytics.* purpose");
    }
    let k = raw.k.as_ref().map_or(DEFAULT_K, |k| at_least_2(checker, k));
    let scope = Scope { purpose: &purpose, properties, lifecycle_declared, k };
    let datasets = in_file_order(raw.datasets)
        .into_iter()
        .map(|(key, raw)| dataset(checker, &scope, key, raw))
        .collect();
    Some(Analytics { purpose, k, datasets })
}

/// What every dataset is checked against: the analytics purpose, the declared properties, whether
/// lifecycle stages are defined, and the section's default k.
struct Scope<'a> {
    purpose: &'a str,
    properties: &'a [Property],
    lifecycle_declared: bool,
    k: u32,
}

fn at_least_2(checker: &mut Checker<'_>, value: &S<u32>) -> u32 {
    if *value.get_ref() < 2 {
        checker.at(value.span(), "k must be at least 2: a group of one is a person");
    }
    *value.get_ref()
}

/// A property may be grouped by or summed only if it serves the analytics purpose and is not
/// sensitive.
fn usable(checker: &mut Checker<'_>, scope: &Scope<'_>, path: &S<String>, what: &str) -> Option<PropertyId> {
    let purpose = scope.purpose;
    let Some(property) = scope.properties.iter().find(|p| &p.path == path.get_ref()) else {
        checker.at(path.span(), format!("{what} {:?} is not a declared property", path.get_ref()));
        return None;
    };
    if property.sensitive {
        checker.at(path.span(), format!("{:?} is sensitive: never in aggregates", path.get_ref()));
    } else if !property.purposes.iter().any(|p| covers(p, purpose) || covers(purpose, p)) {
        checker.at(path.span(), format!("{:?} does not serve {purpose}", path.get_ref()));
    }
    Some(property.id)
}

fn dataset(checker: &mut Checker<'_>, scope: &Scope<'_>, key: S<String>, raw: RawDataset) -> Dataset {
    check_key(checker, &key, "dataset");
    let epsilon = raw.epsilon.as_ref().map(|e| {
        if let Some(problem) = bounds::catalog_epsilon(*e.get_ref(), "epsilon (the budget per period)") {
            checker.at(e.span(), problem);
        }
        *e.get_ref()
    });
    let period = match &raw.period {
        Some(text) => text.get_ref().parse::<Retention>().unwrap_or_else(|error| {
            checker.at(text.span(), error.to_string());
            Retention::days(30)
        }),
        None => Retention::days(30),
    };
    let rows_per_person = match &raw.rows_per_person {
        Some(v) => match bounds::rows_per_person(*v.get_ref()) {
            Some(problem) => {
                checker.at(v.span(), problem);
                1
            }
            None => *v.get_ref(),
        },
        None => 20,
    };
    if raw.dimensions.is_empty() {
        checker.at(key.span(), "a dataset needs the dimensions it may be grouped by");
    }
    let dimensions = raw.dimensions.iter().filter_map(|name| dimension(checker, scope, name)).collect();
    let measures = in_file_order(raw.measures)
        .into_iter()
        .filter_map(|(path, bounds)| {
            let [min, max] = *bounds.get_ref();
            if !(min.is_finite() && max.is_finite() && min < max) {
                checker.at(bounds.span(), "a measure's bounds are [min, max] with min < max");
            }
            usable(checker, scope, &path, "measure").map(|property| Measure { property, min, max })
        })
        .collect();
    let generalize = in_file_order(raw.generalize)
        .into_iter()
        .filter_map(|(path, rule)| {
            let parsed = Generalize::parse(rule.get_ref());
            if parsed.is_none() {
                checker.at(
                    rule.span(),
                    format!("{:?} is not a generalization: prefix:N, round:N, month or year", rule.get_ref()),
                );
            }
            let property = usable(checker, scope, &path, "generalized property")?;
            Some((property, parsed?))
        })
        .collect();
    Dataset {
        generalize,
        key: key.into_inner(),
        description: raw.description,
        k: raw.k.as_ref().map_or(scope.k, |k| at_least_2(checker, k)),
        epsilon,
        period,
        rows_per_person,
        dimensions,
        measures,
    }
}

fn dimension(checker: &mut Checker<'_>, scope: &Scope<'_>, name: &S<String>) -> Option<Dimension> {
    match Dimension::builtin(name.get_ref()) {
        Some(Dimension::Lifecycle) if !scope.lifecycle_declared => {
            checker.at(
                name.span(),
                "grouping by lifecycle needs the stages' thresholds: declare \
                 [personalization.lifecycle] with new_days, at_risk_days and lapsed_days",
            );
            None
        }
        Some(builtin) => Some(builtin),
        None if name.get_ref().contains('.') => {
            usable(checker, scope, name, "dimension").map(Dimension::Property)
        }
        None => {
            checker.at(
                name.span(),
                format!(
                    "{:?} is not a dimension: one of {} or a declared property path",
                    name.get_ref(),
                    Dimension::BUILTIN.join(", ")
                ),
            );
            None
        }
    }
}
