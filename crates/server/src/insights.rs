//! Private analytics in the server: a query is checked against its dataset, spends its ε from the
//! budget in the store (refused, with what remains, when it would overspend), reads the window's
//! events of people who permit the analytics purpose now (never restricted or erased people), and
//! answers through `tactful_insights` with k-suppression and, when the dataset says so, noise.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Analytics, Dataset, Dimension, PropertyId};
use tactful_domain::minimize;
use tactful_domain::segment::{format_time, parse_time};
use tactful_insights::{Metric, Noise, Row};
use tactful_store::{FamilyKeys, SpendOutcome, StoreError};
use time::OffsetDateTime;

use crate::error::{ApiError, ErrorCode};
use crate::routes::v1::subjects::subject_context;
use crate::{AppState, now_millis};

/// Events read per store call.
const PAGE: u32 = 10_000;
/// How far in the future a window may end (clock skew).
const SKEW_MS: i64 = 5 * 60 * 1000;
/// ε is kept in millionths.
pub const MICRO: f64 = 1_000_000.0;

/// A query as analysts send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub dataset: String,
    /// `events`, `people`, `sum` or `mean`.
    pub metric: String,
    /// The measure summed or averaged.
    pub property: Option<String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    /// RFC 3339; the window is `[from, to)`.
    pub from: String,
    pub to: String,
    /// The ε this answer spends (datasets with a budget only).
    pub epsilon: Option<f64>,
}

/// Who asks, for the audit log.
pub struct Asker<'a> {
    pub actor: &'a str,
    pub role: &'a str,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::with_message(ErrorCode::InvalidRequest, message)
}

/// A query checked against the catalog.
struct Checked<'a> {
    dataset: &'a Dataset,
    metric: Metric,
    measure: Option<PropertyId>,
    dimensions: Vec<Dimension>,
    from: i64,
    to: i64,
    epsilon: Option<f64>,
}

fn check<'a>(
    state: &AppState,
    analytics: &'a Analytics,
    query: &Query,
    now: i64,
) -> Result<Checked<'a>, ApiError> {
    let catalog = &state.catalog;
    let dataset = analytics.dataset(&query.dataset).ok_or_else(|| {
        let declared: Vec<&str> = analytics.datasets.iter().map(|d| d.key.as_str()).collect();
        ApiError::with_message(
            ErrorCode::UnknownDataset,
            format!("the catalog declares no dataset {:?}; declared: {}", query.dataset, declared.join(", ")),
        )
    })?;
    let mut dimensions = Vec::new();
    for name in &query.group_by {
        let found =
            dataset.dimensions.iter().find(|d| catalog.dimension_name(**d) == name).ok_or_else(|| {
                let declared: Vec<&str> =
                    dataset.dimensions.iter().map(|d| catalog.dimension_name(*d)).collect();
                ApiError::with_message(
                    ErrorCode::UndeclaredDimension,
                    format!(
                        "dataset {} cannot be grouped by {name:?}; it may be by: {}",
                        dataset.key,
                        declared.join(", ")
                    ),
                )
            })?;
        if dimensions.contains(found) {
            return Err(invalid(format!("{name} is grouped by twice")));
        }
        dimensions.push(*found);
    }
    if dimensions.len() > 4 {
        return Err(invalid("group by at most 4 dimensions"));
    }
    let (metric, measure) = match (query.metric.as_str(), query.property.as_deref()) {
        ("events", None) => (Metric::Events, None),
        ("people", None) => (Metric::People, None),
        ("events" | "people", Some(_)) => return Err(invalid("counts take no property; sum and mean do")),
        (kind @ ("sum" | "mean"), Some(path)) => {
            let measure = dataset.measures.iter().find(|m| catalog.property(m.property).path == path).ok_or_else(|| {
                let declared: Vec<&str> = dataset.measures.iter().map(|m| catalog.property(m.property).path.as_str()).collect();
                ApiError::with_message(
                    ErrorCode::UndeclaredProperty,
                    format!(
                        "{path:?} is not a measure of dataset {} (a sum needs declared bounds); measures: {}",
                        dataset.key,
                        declared.join(", ")
                    ),
                )
            })?;
            let metric = if kind == "sum" {
                Metric::Sum { min: measure.min, max: measure.max }
            } else {
                Metric::Mean { min: measure.min, max: measure.max }
            };
            (metric, Some(measure.property))
        }
        ("sum" | "mean", None) => return Err(invalid("a sum or mean needs the property it is of")),
        (other, _) => {
            return Err(invalid(format!("metric {other:?} is not one of events, people, sum, mean")));
        }
    };
    let time = |text: &str, name: &str| {
        parse_time(text).ok_or_else(|| invalid(format!("{name} is not an RFC 3339 time: {text:?}")))
    };
    let (from, to) = (time(&query.from, "from")?, time(&query.to, "to")?);
    if from >= to {
        return Err(invalid("the window is empty: from must be before to"));
    }
    if to > now + SKEW_MS {
        return Err(invalid(format!(
            "the window ends in the future ({}); it may end now at the latest",
            query.to
        )));
    }
    let epsilon = match (dataset.epsilon, query.epsilon) {
        (_, Some(e)) if !(e.is_finite() && e > 0.0) => {
            return Err(invalid(format!("epsilon must be a positive number, not {e}")));
        }
        (None, Some(_)) => {
            return Err(invalid(format!(
                "dataset {} answers exactly with k-thresholds; it has no privacy budget to spend",
                dataset.key
            )));
        }
        (Some(_), None) => {
            return Err(invalid(format!(
                "dataset {} adds noise: say how much ε this answer spends (epsilon)",
                dataset.key
            )));
        }
        (Some(limit), Some(e)) if e > limit => {
            return Err(invalid(format!(
                "epsilon {e} is more than dataset {}'s whole budget per period ({limit})",
                dataset.key
            )));
        }
        (_, e) => e,
    };
    Ok(Checked { dataset, metric, measure, dimensions, from, to, epsilon })
}

/// The start of the budget period `now` falls in.
pub fn period_start(dataset: &Dataset, now: i64) -> i64 {
    let length = dataset.period.as_millis().max(1);
    now.div_euclid(length) * length
}

/// Answers a query: checks, spends, reads, aggregates, audits.
pub async fn run(state: &AppState, asker: Asker<'_>, query: &Query) -> Result<Value, ApiError> {
    let analytics = state.catalog.analytics().ok_or_else(|| ApiError::new(ErrorCode::AnalyticsOff))?;
    let now = now_millis();
    let checked = check(state, analytics, query, now)?;
    let dataset = checked.dataset;
    let dimension_names: Vec<String> =
        checked.dimensions.iter().map(|d| state.catalog.dimension_name(*d).to_owned()).collect();
    let entry = |epsilon: f64| AuditEvent::Insights {
        actor: asker.actor.to_owned(),
        role: asker.role.to_owned(),
        purpose: analytics.purpose.clone(),
        dataset: dataset.key.clone(),
        metric: query.metric.clone(),
        property: query.property.clone(),
        dimensions: dimension_names.clone(),
        epsilon: format!("{epsilon}"),
    };
    // Spend first: a failure after it wastes ε, never lets a query through unpaid.
    let budget = match (checked.epsilon, dataset.epsilon) {
        (Some(epsilon), Some(limit)) => {
            let period = period_start(dataset, now);
            let micro = (epsilon * MICRO).ceil() as i64;
            match state
                .store
                .spend_budget(
                    &dataset.key,
                    period,
                    micro,
                    (limit * MICRO).floor() as i64,
                    vec![entry(epsilon)],
                )
                .await?
            {
                SpendOutcome::Spent(budget) => Some((budget, period)),
                SpendOutcome::Refused(budget) => {
                    let until = format_time(period + dataset.period.as_millis());
                    return Err(ApiError::with_message(
                        ErrorCode::BudgetExhausted,
                        format!(
                            "this answer would spend ε = {epsilon}, but dataset {} has ε = {} left until {until} (of {limit} per {} days)",
                            dataset.key,
                            budget.remaining_micro() as f64 / MICRO,
                            dataset.period.as_days()
                        ),
                    ));
                }
            }
        }
        _ => {
            state.store.audit_append(vec![entry(0.0)], now).await?;
            None
        }
    };

    let rows = read_rows(state, analytics, &checked).await?;
    let noise = checked.epsilon.map(|epsilon| Noise { epsilon, rows_per_person: dataset.rows_per_person });
    let answer = tactful_insights::answer(rows, checked.metric, dataset.k, noise)
        .map_err(|e| invalid(e.to_string()))?;
    let groups: Vec<Value> = answer
        .groups
        .iter()
        .map(|group| {
            let key: serde_json::Map<String, Value> = dimension_names
                .iter()
                .cloned()
                .zip(group.key.iter().map(|v| Value::String(v.clone())))
                .collect();
            match group.value {
                Some(value) => json!({
                    "group": key,
                    "value": round(value),
                    "interval_95": group.interval.map(|(low, high)| [round(low), round(high)]),
                }),
                None => json!({"group": key, "suppressed": true}),
            }
        })
        .collect();
    let suppressed = answer.groups.iter().filter(|g| g.value.is_none()).count();
    Ok(json!({
        "dataset": dataset.key,
        "purpose": analytics.purpose,
        "metric": query.metric,
        "property": query.property,
        "group_by": dimension_names,
        "from": format_time(checked.from),
        "to": format_time(checked.to),
        "groups": groups,
        "privacy": {
            "k": dataset.k,
            "suppressed_groups": if noise.is_some() { Value::Null } else { json!(suppressed) },
            "epsilon": answer.epsilon,
            "delta": answer.delta,
            "noise_scale": answer.scale.map(round),
            "release_threshold": answer.threshold,
            "rows_per_person": noise.map(|n| n.rows_per_person),
            "rows_left_out": answer.rows_dropped,
            "budget": budget.map(|(b, period)| json!({
                "epsilon_per_period": dataset.epsilon,
                "spent": b.spent_micro as f64 / MICRO,
                "remaining": b.remaining_micro() as f64 / MICRO,
                "period_ends": format_time(period + dataset.period.as_millis()),
            })),
            "note": if noise.is_some() {
                "values carry discrete Laplace noise; interval_95 holds the exact value with 95% probability; groups whose noisy count of people stays under the threshold are not released (not even named)"
            } else {
                "exact values; groups with fewer than k distinct people are suppressed"
            },
        },
    }))
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The window's events of people who permit the analytics purpose, as rows.
async fn read_rows(
    state: &AppState,
    analytics: &Analytics,
    checked: &Checked<'_>,
) -> Result<Vec<Row>, StoreError> {
    let catalog = &state.catalog;
    let purpose = catalog
        .purpose_index(&analytics.purpose)
        .ok_or_else(|| StoreError::Internal("undeclared analytics purpose".into()))?;
    // The properties whose values the query needs: each must be permitted for the person, and the
    // event is only opened when one is needed.
    let needed: Vec<PropertyId> = checked
        .dimensions
        .iter()
        .filter_map(|d| match d {
            Dimension::Property(p) => Some(*p),
            _ => None,
        })
        .chain(checked.measure)
        .collect();
    // Without a property, whether the person may be counted at all is judged on the purpose's
    // first property (consent, regime, restriction and "no personal data in analytics" all apply).
    let proxy = catalog
        .properties()
        .iter()
        .find(|p| p.purposes.iter().any(|k| k == &analytics.purpose))
        .map(|p| p.id);
    let judged: Vec<PropertyId> =
        if needed.is_empty() { proxy.into_iter().collect() } else { needed.clone() };
    let now = now_millis();
    let mut permitted: HashMap<String, bool> = HashMap::new();
    let mut keys: HashMap<String, FamilyKeys> = HashMap::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let page = state.store.events_in_window(checked.from, checked.to, after.clone(), PAGE).await?;
        let Some((_, last)) = page.last() else { break };
        after = Some((last.timestamp, last.source.clone(), last.dedupe));
        let unknown: Vec<String> =
            page.iter().map(|(root, _)| root.clone()).filter(|r| !permitted.contains_key(r)).collect();
        if !unknown.is_empty() {
            let mut unknown = unknown;
            unknown.sort();
            unknown.dedup();
            for found in state.store.subject_states(unknown.clone()).await? {
                let context = subject_context(state, &found);
                let consents = state.policy.consents(&context, now);
                let ok = !judged.is_empty()
                    && judged.iter().all(|p| state.policy.decide(&context, &consents, *p, purpose).is_ok());
                permitted.insert(found.subject, ok);
            }
            for root in unknown {
                permitted.entry(root).or_insert(false);
            }
        }
        for (root, event) in &page {
            if !permitted.get(root).copied().unwrap_or(false) {
                continue;
            }
            let record = if needed.is_empty() {
                None
            } else {
                if !keys.contains_key(root) {
                    let Some(summary) = state.store.subject_summary(root).await? else { continue };
                    keys.insert(root.clone(), FamilyKeys::unwrap(&state.vault, &summary.keys)?);
                }
                let opened = keys[root].open_event(event)?;
                match opened.record {
                    Value::Object(record) => Some(record),
                    _ => None,
                }
            };
            let mut key = Vec::with_capacity(checked.dimensions.len());
            let mut complete = true;
            for dimension in &checked.dimensions {
                let part = match dimension {
                    Dimension::Event => Some(event.name.clone().unwrap_or_else(|| event.kind.clone())),
                    Dimension::Source => Some(event.source.clone()),
                    Dimension::Day => Some(day(event.timestamp)),
                    Dimension::Week => Some(week(event.timestamp)),
                    Dimension::Property(p) => {
                        record.as_ref().and_then(|r| scalar(r, &catalog.property(*p).path))
                    }
                };
                match part {
                    Some(part) => key.push(part),
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if !complete {
                continue;
            }
            let value = match checked.measure {
                Some(p) => record.as_ref().and_then(|r| {
                    minimize::values_at(r, &catalog.property(p).path).first().and_then(|v| v.as_f64())
                }),
                None => None,
            };
            if checked.measure.is_some() && value.is_none() {
                continue;
            }
            let next = ids.len() as u64;
            let person = *ids.entry(root.clone()).or_insert(next);
            rows.push(Row { person, key, value });
        }
    }
    Ok(rows)
}

/// A value to group by: strings and numbers as text; objects, arrays and nulls are not groupable.
fn scalar(record: &serde_json::Map<String, Value>, path: &str) -> Option<String> {
    match minimize::values_at(record, path).first()? {
        Value::String(text) => Some(text.chars().take(100).collect()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn day(at: i64) -> String {
    format_time(at).get(..10).unwrap_or_default().to_owned()
}

fn week(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at.div_euclid(1000))
        .map(|t| {
            let (year, week, _) = t.to_iso_week_date();
            format!("{year}-W{week:02}")
        })
        .unwrap_or_default()
}
