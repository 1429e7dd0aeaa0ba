//! A person's profile read for a stated purpose: their traits (and newest events) that may serve the
//! purpose, that the caller's role may read, and that their consent allows now. Only permitted
//! values are decrypted; what is left out is counted per category and reason, never shown.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};
use tactful_domain::audit::{ReadDecision, Withheld};
use tactful_domain::catalog::PropertyId;
use tactful_domain::minimize;
use tactful_domain::policy::Reason;
use tactful_domain::segment::format_time;

use super::{Read, Reader};
use crate::error::{AppError, ErrorCode};
use crate::{App, Caller, subjects};

/// Most events a profile read returns.
pub const MAX_EVENTS: usize = 100;

/// What a profile read answers.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub subject: String,
    pub purpose: String,
    pub decision: ReadDecision,
    pub traits: Map<String, Value>,
    pub events: Vec<Value>,
    pub events_withheld: u32,
    pub returned_categories: Vec<String>,
    pub withheld: Vec<Withheld>,
}

/// Reads the profile of the person `reference` names, for `purpose`, with up to `events` of their
/// newest events. A role that may not use the purpose is refused whether or not the person exists
/// (the answer must not tell); the attempt on an existing person is in their access log.
pub async fn profile(
    app: &App,
    caller: &Caller,
    reference: &str,
    purpose: Option<&str>,
    events: usize,
) -> Result<Profile, AppError> {
    let (purpose_key, purpose) = subjects::purpose(app, purpose)?;
    if events > MAX_EVENTS {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            format!("events must be between 0 and {MAX_EVENTS}"),
        ));
    }
    let reader = Reader::Key(caller);
    if !app.policy.role_may_use(&caller.role, purpose) {
        let refusal = AppError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not read for {purpose_key}", caller.role.name),
        );
        return Err(match subjects::find(app, reference).await {
            Ok(subject) => Read::new(app, &reader, purpose_key, &subject).refuse(refusal).await,
            Err(_) => refusal,
        });
    }
    let subject = subjects::find(app, reference).await?;
    let (found, data) =
        tokio::try_join!(app.store.subject_state(&subject), app.store.subject_data(&subject))?;
    let (found, mut data) = found.zip(data).ok_or_else(|| AppError::new(ErrorCode::UnknownSubject))?;
    let now = app.now();
    let context = subjects::context(app, &found);
    let consents = app.policy.consents(&context, now);
    // One decision per declared property, computed once for the whole read.
    let decisions: Vec<Result<(), Reason>> = app
        .catalog
        .properties()
        .iter()
        .map(|property| {
            if app.policy.role_may_read(&caller.role, property.id, purpose) {
                app.policy.decide(&context, &consents, property.id, purpose)
            } else {
                Err(Reason::Role)
            }
        })
        .collect();
    let refused: Vec<PropertyId> = app
        .catalog
        .properties()
        .iter()
        .filter(|property| decisions[property.id.index()].is_err())
        .map(|property| property.id)
        .collect();
    let mut read = Read::new(app, &reader, purpose_key, &subject);
    // Withheld properties, distinct per category and reason.
    let mut withheld: BTreeMap<(String, String), BTreeSet<PropertyId>> = BTreeMap::new();
    let mut withhold = |property: PropertyId, reason: Reason| {
        let category = app.catalog.property(property).category.clone();
        withheld.entry((category, app.policy.describe(reason))).or_default().insert(property);
    };

    // Only permitted values are ever decrypted.
    data.profile.retain(|value| match app.catalog.property_by_path(&value.path) {
        Some(property) => match decisions[property.id.index()] {
            Ok(()) => true,
            Err(reason) => {
                withhold(property.id, reason);
                false
            }
        },
        None => false,
    });
    data.events.sort_by_key(|event| std::cmp::Reverse(event.timestamp));
    data.events.truncate(events);
    let mut traits = Map::new();
    for value in data.open_profile(&app.vault)? {
        if let Some(property) = app.catalog.property_by_path(&value.path) {
            read.returned(&property.category);
        }
        let name = value.path.strip_prefix("traits.").unwrap_or(&value.path).to_owned();
        traits.insert(name, value.value);
    }
    let mut shown = Vec::new();
    let mut events_withheld = 0;
    for event in data.open_events(&app.vault)? {
        let Value::Object(mut record) = event.record else { continue };
        // Data of properties the catalog has since dropped is shown to nobody.
        minimize::retain_declared(&app.catalog, &mut record);
        for property in minimize::withhold(&app.catalog, &mut record, &refused) {
            if let Err(reason) = decisions[property.index()] {
                withhold(property, reason);
            }
        }
        // That an event happened is behaviour too: with nothing of it readable, it is left out.
        if record.is_empty() {
            events_withheld += 1;
            continue;
        }
        for property in app.catalog.properties() {
            if decisions[property.id.index()].is_ok() && present(&record, &property.path) {
                read.returned(&property.category);
            }
        }
        shown.push(json!({
            "type": event.kind,
            "event": event.name,
            "source": event.source,
            "timestamp": format_time(event.timestamp),
            "data": record,
        }));
    }
    for ((category, reason), properties) in withheld {
        read.withheld(&category, &reason, u32::try_from(properties.len()).unwrap_or(u32::MAX));
    }
    let returned_categories = read.returned_categories();
    let withheld = read.withheld_list();
    let decision = read.commit().await?;
    Ok(Profile {
        subject,
        purpose: purpose_key.to_owned(),
        decision,
        traits,
        events: shown,
        events_withheld,
        returned_categories,
        withheld,
    })
}

/// Whether a record holds a value at a catalog path (`[]` steps into array elements).
fn present(record: &Map<String, Value>, path: &str) -> bool {
    fn at(value: &Value, steps: &[&str]) -> bool {
        match (steps.split_first(), value) {
            (None, _) => true,
            (Some((step, rest)), Value::Object(object)) => field(object, step, rest),
            _ => false,
        }
    }
    fn field(object: &Map<String, Value>, step: &str, rest: &[&str]) -> bool {
        match step.strip_suffix("[]") {
            Some(name) => {
                matches!(object.get(name), Some(Value::Array(items)) if items.iter().any(|item| at(item, rest)))
            }
            None => object.get(step).is_some_and(|child| at(child, rest)),
        }
    }
    let steps: Vec<&str> = path.split('.').collect();
    steps.split_first().is_some_and(|(step, rest)| field(record, step, rest))
}
