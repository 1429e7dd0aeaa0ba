//! Private analytics in the server: a query is checked against its dataset and the bounds of
//! `tactful_domain::bounds` and against what its budget has left (read-only), then reads the
//! window's events of people who permit the analytics purpose now (never restricted or erased
//! people) and computes its answer through `tactful_insights` (k-suppression and, when the dataset
//! says so, noise) off the async workers within the work deadline; only then does it spend its ε,
//! in one transaction with its audit entry, and answer. A query refused, late or outspent by
//! another spends nothing.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::bounds;
use tactful_domain::catalog::{Analytics, Dataset, Dimension, PropertyId};
use tactful_domain::minimize;
use tactful_domain::segment::{format_time, parse_time};
use tactful_insights::{Answer, Metric, Noise, Tally};
use tactful_personalize::lifecycle::{self, Stage};
use tactful_store::{FamilyKeys, Scan, SpendOutcome, StoreError, SubjectState, WindowPage};
use time::OffsetDateTime;

use crate::App;
use crate::error::{AppError, ErrorCode};
use crate::subjects::context as subject_context;
use crate::work::Deadline;

mod scan;

use scan::tally;
pub(crate) use scan::{Pages, People, family_keys};

/// Envelopes read per store call (no property needed: about 40 bytes each in memory).
const ENVELOPES_PER_PAGE: u32 = 50_000;
/// Events read per store call when their records are opened.
const RECORDS_PER_PAGE: u32 = 5_000;
/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
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

/// Answers one query for a role that may use the analytics purpose.
pub async fn query(app: &App, caller: &crate::Caller, query: &Query) -> Result<Value, AppError> {
    let analytics = app.catalog.analytics().ok_or_else(|| AppError::new(ErrorCode::AnalyticsOff))?;
    let purpose =
        app.catalog.purpose_index(&analytics.purpose).ok_or_else(|| AppError::new(ErrorCode::Internal))?;
    if !app.policy.role_may_use(&caller.role, purpose) {
        return Err(AppError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not use {}", caller.role.name, analytics.purpose),
        ));
    }
    run(app, Asker { actor: &caller.key, role: &caller.role.name }, query).await
}

/// Who asks, for the audit log.
pub struct Asker<'a> {
    pub actor: &'a str,
    pub role: &'a str,
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::with_message(ErrorCode::InvalidRequest, message)
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

fn check<'a>(app: &App, analytics: &'a Analytics, query: &Query, now: i64) -> Result<Checked<'a>, AppError> {
    let catalog = &app.catalog;
    let dataset = analytics.dataset(&query.dataset).ok_or_else(|| {
        let declared: Vec<&str> = analytics.datasets.iter().map(|d| d.key.as_str()).collect();
        AppError::with_message(
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
                AppError::with_message(
                    ErrorCode::UndeclaredDimension,
                    format!(
                        "dataset {} cannot be grouped by {name:?}; it may be by: {}",
                        dataset.key,
                        declared.join(", ")
                    ),
                )
            })?;
        if dimensions.contains(found) {
            return Err(invalid(format!("{name} is grouped by twice (allowed: each dimension once)")));
        }
        dimensions.push(*found);
    }
    bounds::group_by(dimensions.len()).map_err(invalid)?;
    let (metric, measure) = match (query.metric.as_str(), query.property.as_deref()) {
        ("events", None) => (Metric::Events, None),
        ("people", None) => (Metric::People, None),
        ("events" | "people", Some(_)) => return Err(invalid("counts take no property; sum and mean do")),
        (kind @ ("sum" | "mean"), Some(path)) => {
            let measure = dataset.measures.iter().find(|m| catalog.property(m.property).path == path).ok_or_else(|| {
                let declared: Vec<&str> = dataset.measures.iter().map(|m| catalog.property(m.property).path.as_str()).collect();
                AppError::with_message(
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
    bounds::window(from, to).map_err(invalid)?;
    if to > now + SKEW_MS {
        return Err(invalid(format!(
            "the window ends in the future ({}); it may end now at the latest",
            query.to
        )));
    }
    let epsilon = match (dataset.epsilon, query.epsilon) {
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
        (Some(limit), Some(e)) => Some(bounds::epsilon(e, limit).map_err(|message| {
            invalid(format!(
                "{message}: at most {} per answer, and dataset {}'s budget is {limit} per period",
                bounds::EPSILON_MAX,
                dataset.key
            ))
        })?),
        (None, None) => None,
    };
    Ok(Checked { dataset, metric, measure, dimensions, from, to, epsilon })
}

/// The start of the budget period `now` falls in.
pub fn period_start(dataset: &Dataset, now: i64) -> i64 {
    let length = dataset.period.as_millis().max(1);
    now.div_euclid(length) * length
}

/// Answers a query: checks (the budget too, read-only), reads and computes within the work
/// deadline, then spends and audits in one transaction, and answers.
pub async fn run(app: &App, asker: Asker<'_>, query: &Query) -> Result<Value, AppError> {
    let analytics = app.catalog.analytics().ok_or_else(|| AppError::new(ErrorCode::AnalyticsOff))?;
    let now = app.now();
    let checked = check(app, analytics, query, now)?;
    let dataset = checked.dataset;
    let dimension_names: Vec<String> =
        checked.dimensions.iter().map(|d| app.catalog.dimension_name(*d).to_owned()).collect();
    let entry = |epsilon: f64, outcome: Option<String>| AuditEvent::Insights {
        actor: asker.actor.to_owned(),
        role: asker.role.to_owned(),
        purpose: analytics.purpose.clone(),
        dataset: dataset.key.clone(),
        metric: query.metric.clone(),
        property: query.property.clone(),
        dimensions: dimension_names.clone(),
        epsilon: format!("{epsilon}"),
        outcome,
    };
    // Refused, unread and unpaid, but on record: who asked what of which dataset, and why not.
    let refuse = |outcome: String, error: AppError| async {
        app.store.audit_append(vec![entry(0.0, Some(outcome))], app.now()).await?;
        Err::<Value, AppError>(error)
    };
    let budget = match (checked.epsilon, dataset.epsilon) {
        (Some(epsilon), Some(limit)) => {
            let spend = Spend::new(dataset, epsilon, limit, now);
            // Read-only first: a query the budget cannot pay reads nothing.
            let spent = app
                .store
                .budgets()
                .await?
                .into_iter()
                .find(|(key, period, _)| *key == dataset.key && *period == spend.period)
                .map_or(0, |(_, _, spent)| spent);
            if spent + spend.micro > spend.limit_micro {
                let (outcome, error) = spend.refusal(dataset, spend.limit_micro - spent);
                return refuse(outcome, error).await;
            }
            Some(spend)
        }
        _ => None,
    };

    let noise = checked.epsilon.map(|epsilon| Noise { epsilon, rows_per_person: dataset.rows_per_person });
    let deadline = app.limits.work();
    let answer = match deadline.run(tally(app, analytics, &checked, noise, deadline)).await {
        Ok(answer) => answer,
        Err(error) if error.code == ErrorCode::TooSlow => {
            let outcome = format!(
                "refused: too_slow (not computed within {} ms{})",
                deadline.ms(),
                checked.epsilon.map(|e| format!(", asked ε = {e}")).unwrap_or_default()
            );
            return refuse(outcome, error).await;
        }
        Err(error) => return Err(error),
    };
    // Computed: now paid for, in one transaction with the audit entry, before it is answered.
    let budget = match budget {
        Some(spend) => match app
            .store
            .spend_budget(
                &dataset.key,
                spend.period,
                spend.micro,
                spend.limit_micro,
                vec![entry(spend.epsilon, None)],
            )
            .await?
        {
            SpendOutcome::Spent(budget) => Some((budget, spend.period)),
            // Another answer spent what was left while this one computed.
            SpendOutcome::Refused(budget) => {
                let (outcome, error) = spend.refusal(dataset, budget.remaining_micro());
                return refuse(outcome, error).await;
            }
        },
        None => {
            app.store.audit_append(vec![entry(0.0, None)], app.now()).await?;
            None
        }
    };
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

/// What a noisy answer spends, of which budget period.
struct Spend {
    epsilon: f64,
    micro: i64,
    limit: f64,
    limit_micro: i64,
    period: i64,
}

impl Spend {
    fn new(dataset: &Dataset, epsilon: f64, limit: f64, now: i64) -> Spend {
        Spend {
            epsilon,
            micro: (epsilon * MICRO).ceil() as i64,
            limit,
            limit_micro: (limit * MICRO).floor() as i64,
            period: period_start(dataset, now),
        }
    }

    /// The audit outcome and the error of an answer the budget cannot pay, with `remaining` left.
    fn refusal(&self, dataset: &Dataset, remaining_micro: i64) -> (String, AppError) {
        let until = format_time(self.period + dataset.period.as_millis());
        let left = remaining_micro.max(0) as f64 / MICRO;
        let outcome =
            format!("refused: budget_exhausted (asked ε = {}, {left} left until {until})", self.epsilon);
        let error = AppError::with_message(
            ErrorCode::BudgetExhausted,
            format!(
                "this answer would spend ε = {}, but dataset {} has ε = {left} left until {until} (of {} per {} days)",
                self.epsilon,
                dataset.key,
                self.limit,
                dataset.period.as_days()
            ),
        );
        (outcome, error)
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
