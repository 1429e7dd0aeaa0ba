//! The brand's view of one customer, always for a stated purpose: `GET /v1/subjects/{id}/profile`
//! (purpose-gated reads), `GET|POST /v1/subjects/{id}/consents` (the consent ledger and its signed
//! receipts) and `GET /v1/subjects/{id}/access-log` (who read their data, when and why). `{id}` is
//! a subject id (`sub_…`) or an identifier (`email:ada@example.com`, `user_id:u-1`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tactful_domain::audit::{AuditEvent, ReadDecision, Withheld};
use tactful_domain::catalog::PropertyId;
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod, ConsentStates, Status};
use tactful_domain::minimize;
use tactful_domain::policy::{Reason, SubjectContext};
use tactful_domain::segment::{format_time, parse_time};
use tactful_store::SubjectState;

use crate::auth::{ApiJson, Caller, subject};
use crate::error::{ApiError, ErrorCode};
use crate::{AppState, now_millis};

/// Most events a profile read returns.
const MAX_EVENTS: usize = 100;
/// Most consent changes one request may record.
const MAX_CHANGES: usize = 100;
/// How far in the future a consent's `at` may lie (clock skew between the brand and us).
const FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/subjects/{id}/profile", get(profile))
        .route("/v1/subjects/{id}/consents", get(consents).post(record_consents))
        .route("/v1/subjects/{id}/consents/receipts", get(receipts))
        .route("/v1/subjects/{id}/consents/receipts/{receipt}", get(receipt))
        .route("/v1/subjects/{id}/access-log", get(access_log))
        .route("/v1/subjects/{id}/link", axum::routing::post(link))
}

/// Reads a query string into `T`, answering problems in the one error shape.
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(value)| value).map_err(|error| {
        let text = error.body_text();
        let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
        ApiError::with_message(ErrorCode::InvalidRequest, format!("the query string is invalid: {detail}"))
    })
}

#[derive(Debug, Deserialize)]
struct ProfileQuery {
    purpose: Option<String>,
    /// How many of the newest events to include (0 to 100).
    #[serde(default)]
    events: usize,
}

/// `GET /v1/subjects/{id}/profile?purpose=P[&events=N]`: the subject's traits (and newest events)
/// that may serve P, that the caller's role may read, and that the subject's consent allows. What is
/// left out is counted per category and reason, never shown. Every read is in the audit log before
/// it is answered.
async fn profile(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
    params: Result<Query<ProfileQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let purpose_key = params
        .purpose
        .as_deref()
        .map(str::trim)
        .filter(|purpose| !purpose.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::PurposeRequired))?;
    let purpose =
        state.catalog.purpose_index(purpose_key).ok_or_else(|| unknown_purpose(&state, purpose_key))?;
    if params.events > MAX_EVENTS {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("events must be between 0 and {MAX_EVENTS}"),
        ));
    }
    let read =
        |pseudonym: String, returned: Vec<String>, withheld: Vec<Withheld>, decision| AuditEvent::Read {
            actor: caller.key.clone(),
            role: caller.role.name.clone(),
            purpose: purpose_key.to_owned(),
            subject: pseudonym,
            returned,
            withheld,
            decision,
        };
    if !state.policy.role_may_use(&caller.role, purpose) {
        // Refused whether or not the customer exists (the answer must not tell); the attempt on an
        // existing customer is in their access log.
        if let Ok(subject) = subject(&state, &reference).await {
            let denied =
                read(state.vault.subject_pseudonym(&subject), Vec::new(), Vec::new(), ReadDecision::Denied);
            state.store.audit_append(vec![denied], now_millis()).await?;
        }
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not read for {purpose_key}", caller.role.name),
        ));
    }
    let subject = subject(&state, &reference).await?;

    let (found, data) =
        tokio::try_join!(state.store.subject_state(&subject), state.store.subject_data(&subject))?;
    let (found, mut data) = found.zip(data).ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
    let now = now_millis();
    let context = subject_context(&state, &found);
    let consents = state.policy.consents(&context, now);
    // One decision per declared property, computed once for the whole read.
    let decisions: Vec<Result<(), Reason>> = state
        .catalog
        .properties()
        .iter()
        .map(|property| {
            if state.policy.role_may_read(&caller.role, property.id, purpose) {
                state.policy.decide(&context, &consents, property.id, purpose)
            } else {
                Err(Reason::Role)
            }
        })
        .collect();
    let refused: Vec<PropertyId> = state
        .catalog
        .properties()
        .iter()
        .filter(|property| decisions[property.id.index()].is_err())
        .map(|property| property.id)
        .collect();
    let mut returned: BTreeMap<String, ()> = BTreeMap::new();
    let mut withheld: BTreeMap<(String, String), std::collections::BTreeSet<PropertyId>> = BTreeMap::new();
    let mut withhold = |property: PropertyId, reason: Reason| {
        let category = state.catalog.property(property).category.clone();
        withheld.entry((category, state.policy.describe(reason))).or_default().insert(property);
    };

    // Only permitted values are ever decrypted.
    data.profile.retain(|value| match state.catalog.property_by_path(&value.path) {
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
    data.events.truncate(params.events);
    let mut traits = Map::new();
    for value in data.open_profile(&state.vault)? {
        if let Some(property) = state.catalog.property_by_path(&value.path) {
            returned.insert(property.category.clone(), ());
        }
        let name = value.path.strip_prefix("traits.").unwrap_or(&value.path).to_owned();
        traits.insert(name, value.value);
    }
    let mut events = Vec::new();
    let mut events_withheld = 0;
    for event in data.open_events(&state.vault)? {
        let Value::Object(mut record) = event.record else { continue };
        // Data of properties the catalog has since dropped is shown to nobody.
        minimize::retain_declared(&state.catalog, &mut record);
        for property in minimize::withhold(&state.catalog, &mut record, &refused) {
            if let Err(reason) = decisions[property.index()] {
                withhold(property, reason);
            }
        }
        // That an event happened is behaviour too: with nothing of it readable, it is left out.
        if record.is_empty() {
            events_withheld += 1;
            continue;
        }
        for property in state.catalog.properties() {
            if decisions[property.id.index()].is_ok() && present(&record, &property.path) {
                returned.insert(property.category.clone(), ());
            }
        }
        events.push(json!({
            "type": event.kind,
            "event": event.name,
            "source": event.source,
            "timestamp": format_time(event.timestamp),
            "data": record,
        }));
    }

    let withheld: Vec<Withheld> = withheld
        .into_iter()
        .map(|((category, reason), properties)| Withheld {
            category,
            reason,
            count: u32::try_from(properties.len()).unwrap_or(u32::MAX),
        })
        .collect();
    let returned: Vec<String> = returned.into_keys().collect();
    let decision = match (returned.is_empty(), withheld.is_empty()) {
        (_, true) => ReadDecision::Permitted,
        (true, false) => ReadDecision::Denied,
        (false, false) => ReadDecision::Partial,
    };
    let pseudonym = state.vault.subject_pseudonym(&subject);
    state
        .store
        .audit_append(vec![read(pseudonym, returned.clone(), withheld.clone(), decision)], now)
        .await?;
    Ok(Json(json!({
        "subject": subject,
        "purpose": purpose_key,
        "decision": decision,
        "traits": traits,
        "events": events,
        "events_withheld": events_withheld,
        "returned_categories": returned,
        "withheld": withheld,
    })))
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

pub(crate) fn unknown_purpose(state: &AppState, purpose: &str) -> ApiError {
    let declared: Vec<&str> = state.catalog.purposes().iter().map(|purpose| purpose.key.as_str()).collect();
    ApiError::with_message(
        ErrorCode::UnknownPurpose,
        format!("the catalog declares no purpose {purpose:?}; declared: {}", declared.join(", ")),
    )
}

/// What the policy needs to know of a subject's family.
pub(crate) fn subject_context(state: &AppState, found: &SubjectState) -> SubjectContext {
    SubjectContext {
        jurisdiction: found.jurisdiction.as_deref().and_then(|key| state.catalog.jurisdiction_index(key)),
        minor: found.minor,
        restricted: found.restricted,
        consents: found.consents(),
    }
}

/// The subject's consent per declared purpose now, and the ledger it is folded from (newest first).
fn consent_view(state: &AppState, found: &SubjectState) -> Value {
    let states = ConsentStates::fold(&found.ledger);
    let now = now_millis();
    let purposes: Vec<Value> = state
        .catalog
        .purposes()
        .iter()
        .map(|purpose| {
            let status = match states.status(&purpose.key, purpose.version, now) {
                Status::NoSignal => "no_signal",
                Status::Given { current: false, .. } => "outdated",
                Status::Given { .. } => "given",
                Status::Withdrawn => "withdrawn",
                Status::Expired => "expired",
            };
            let record = states.get(&purpose.key);
            json!({
                "purpose": purpose.key,
                "name": purpose.name,
                "essential": purpose.is_essential(),
                "status": status,
                "method": record.map(|record| record.method.as_str()),
                "at": record.map(|record| format_time(record.at)),
                "expires_at": record.and_then(|record| record.expires_at).map(format_time),
                "version": record.map(|record| record.version),
                "current_version": purpose.version,
                "receipt": record.map(|record| record.id()),
            })
        })
        .collect();
    let ledger: Vec<Value> = found.ledger.iter().rev().map(ledger_entry).collect();
    json!({
        "subject": found.subject,
        "jurisdiction": found.jurisdiction,
        "purposes": purposes,
        "ledger": ledger,
    })
}

pub(crate) fn ledger_entry(event: &ConsentEvent) -> Value {
    json!({
        "receipt": event.id,
        "purpose": event.purpose,
        "status": event.kind.as_str(),
        "method": event.method.as_str(),
        "at": format_time(event.at),
        "expires_at": event.expires_at.map(format_time),
        "version": event.version,
        "source": event.source,
        "jurisdiction": event.jurisdiction,
    })
}

/// `GET /v1/subjects/{id}/consents`.
async fn consents(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let subject = subject(&state, &reference).await?;
    let found =
        state.store.subject_state(&subject).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
    Ok(Json(consent_view(&state, &found)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentChanges {
    changes: Vec<ConsentChange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentChange {
    purpose: String,
    /// `given`, `withdrawn` or `renewed`.
    status: String,
    /// `api` (the default: the brand records what the person told it), `explicit` (the person
    /// acted on the brand's own consent form) or `imported` (from a previous system).
    method: Option<String>,
    /// The version of the purpose's wording the person saw; the current one if absent.
    version: Option<u32>,
    /// When the person decided (RFC 3339); now if absent. Imports carry their original times.
    at: Option<String>,
    /// When a given consent lapses (RFC 3339).
    expires_at: Option<String>,
}

/// `POST /v1/subjects/{id}/consents` with `{"changes": [{purpose, status, method?, version?, at?,
/// expires_at?}]}`. Every change is checked before any is recorded: one bad change records
/// nothing. Each recorded change gets a signed receipt and an audit entry, in one transaction.
async fn record_consents(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<ConsentChanges>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_privacy()?;
    if body.changes.is_empty() || body.changes.len() > MAX_CHANGES {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("send between 1 and {MAX_CHANGES} changes"),
        ));
    }
    let subject = subject(&state, &reference).await?;
    let found =
        state.store.subject_state(&subject).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
    let now = now_millis();
    let mut events = Vec::with_capacity(body.changes.len());
    let mut problems = Vec::new();
    for (index, change) in body.changes.iter().enumerate() {
        match consent_event(&state, &found, change, now) {
            Ok(event) => events.push(event),
            Err((code, problem)) => problems.push((index, code, problem)),
        }
    }
    if !problems.is_empty() {
        let code = if problems.iter().all(|(_, code, _)| *code == ErrorCode::UnknownPurpose) {
            ErrorCode::UnknownPurpose
        } else {
            ErrorCode::InvalidRequest
        };
        let listed: Vec<Value> =
            problems.iter().map(|(index, _, problem)| json!({"index": index, "problem": problem})).collect();
        let first = &problems[0];
        return Err(ApiError::with_message(
            code,
            format!("changes[{}]: {}; nothing was recorded", first.0, first.2),
        )
        .details(json!({"problems": listed})));
    }
    let receipts = record(&state, &found, events).await?;
    let updated = state.store.subject_state(&found.subject).await?.unwrap_or(found);
    let mut view = consent_view(&state, &updated);
    if let Value::Object(object) = &mut view {
        object.insert("receipts".into(), Value::Array(receipts));
    }
    Ok((StatusCode::CREATED, Json(view)))
}

/// Records consent changes of a subject: each gets a signed receipt and an audit entry, and the
/// destinations that want consent changes are told, all in one transaction; then the
/// recommendation model is brought in line (a withdrawal has left it when this returns). Returns
/// the receipts. The API and the preference center both record consent through here.
pub(crate) async fn record(
    state: &AppState,
    found: &SubjectState,
    events: Vec<ConsentEvent>,
) -> Result<Vec<Value>, ApiError> {
    let deliveries =
        tactful_store::requests::consent_deliveries(&state.vault, &state.catalog, &found.subject, &events);
    let mut rows = Vec::with_capacity(events.len());
    let mut audit = Vec::with_capacity(events.len());
    for event in events {
        let (row, entry) = tactful_store::signed_consent(&state.vault, &state.catalog, &found.subject, event);
        rows.push(row);
        audit.push(entry);
    }
    let receipts: Vec<Value> =
        rows.iter().map(|(_, receipt)| serde_json::from_str(receipt).unwrap_or(Value::Null)).collect();
    state.store.record_consents(&found.subject, rows, audit, deliveries).await?;
    crate::personalize::changed(state, &found.subject).await?;
    Ok(receipts)
}

/// Checks one requested change and turns it into a ledger entry.
fn consent_event(
    state: &AppState,
    found: &SubjectState,
    change: &ConsentChange,
    now: i64,
) -> Result<ConsentEvent, (ErrorCode, String)> {
    let invalid = |problem: String| (ErrorCode::InvalidRequest, problem);
    let purpose = state.catalog.purpose(change.purpose.trim()).ok_or_else(|| {
        (ErrorCode::UnknownPurpose, format!("the catalog declares no purpose {:?}", change.purpose))
    })?;
    let kind = match ConsentKind::parse(&change.status) {
        Some(kind @ (ConsentKind::Given | ConsentKind::Withdrawn | ConsentKind::Renewed)) => kind,
        _ => return Err(invalid(format!("status {:?} is not given, withdrawn or renewed", change.status))),
    };
    let method = match change.method.as_deref().map(ConsentMethod::parse) {
        None => ConsentMethod::Api,
        Some(Some(method @ (ConsentMethod::Api | ConsentMethod::Explicit | ConsentMethod::Imported))) => {
            method
        }
        Some(_) => {
            return Err(invalid(format!(
                "method {:?} is not api, explicit or imported (the others are recorded by the door they name)",
                change.method.as_deref().unwrap_or_default()
            )));
        }
    };
    let version = change.version.unwrap_or(purpose.version);
    if version == 0 || version > purpose.version {
        return Err(invalid(format!(
            "version {version} of {} does not exist (it is at version {})",
            purpose.key, purpose.version
        )));
    }
    let time = |field: &str, text: &Option<String>| -> Result<Option<i64>, (ErrorCode, String)> {
        text.as_deref()
            .map(|text| {
                parse_time(text).ok_or_else(|| invalid(format!("{field} {text:?} is not an RFC 3339 time")))
            })
            .transpose()
    };
    let at = time("at", &change.at)?.unwrap_or(now);
    if at > now + FUTURE_SKEW_MS {
        return Err(invalid("at lies in the future".into()));
    }
    let expires_at = time("expires_at", &change.expires_at)?;
    match (kind, expires_at) {
        (ConsentKind::Withdrawn, Some(_)) => return Err(invalid("a withdrawal does not expire".into())),
        (_, Some(end)) if end <= at => return Err(invalid("expires_at must come after at".into())),
        _ => {}
    }
    Ok(ConsentEvent {
        id: tactful_store::new_receipt_id(),
        purpose: purpose.key.clone(),
        kind,
        method,
        at,
        expires_at,
        version,
        source: Some("api".into()),
        jurisdiction: found.jurisdiction.clone(),
    })
}

/// `GET /v1/subjects/{id}/consents/receipts`: every signed receipt of the subject, oldest first.
async fn receipts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let subject = subject(&state, &reference).await?;
    let receipts: Vec<Value> = state
        .store
        .receipts(&subject)
        .await?
        .into_iter()
        .map(|stored| serde_json::from_str(&stored.body).unwrap_or(Value::Null))
        .collect();
    Ok(Json(json!({"subject": subject, "receipts": receipts})))
}

/// `GET /v1/subjects/{id}/consents/receipts/{receipt}`: one signed receipt, as a file to keep
/// (`tactful receipt verify` checks it).
async fn receipt(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((reference, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let subject = subject(&state, &reference).await?;
    let stored = state.store.receipt(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownReceipt))?;
    // The receipt was written to the family root of its time; families only grow, so its subject
    // now resolves to this family's root.
    let owner = state.store.subject_state(&stored.subject).await?.map(|owner| owner.subject);
    if owner.as_deref() != Some(subject.as_str()) {
        return Err(ApiError::new(ErrorCode::UnknownReceipt));
    }
    serde_json::from_str(&stored.body).map(Json).map_err(ApiError::internal)
}

#[derive(Debug, Deserialize)]
struct AccessLogQuery {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// `GET /v1/subjects/{id}/access-log`: who read the subject's data or changed their consent, when
/// and why, newest first.
async fn access_log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
    params: Result<Query<AccessLogQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let params = query(params)?;
    if !(1..=1000).contains(&params.limit) {
        return Err(ApiError::with_message(ErrorCode::InvalidRequest, "limit must be between 1 and 1000"));
    }
    let subject = subject(&state, &reference).await?;
    // Entries name the family root of their time: gather every member's, newest first.
    let members: Vec<String> = match state.store.subject_data(&subject).await? {
        Some(data) => data.keys.into_iter().map(|(member, _)| member).collect(),
        None => vec![subject.clone()],
    };
    let mut entries = Vec::new();
    for member in members {
        entries.extend(
            state.store.audit_for_subject(&state.vault.subject_pseudonym(&member), params.limit).await?,
        );
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
    entries.dedup_by_key(|entry| entry.seq);
    entries.truncate(params.limit as usize);
    let entries: Vec<Value> =
        entries.into_iter().filter_map(|entry| serde_json::from_str::<Value>(&entry.text).ok()).collect();
    Ok(Json(json!({"subject": subject, "entries": entries})))
}

/// `POST /v1/subjects/{id}/link`: a signed, short-lived link to the person's preference center,
/// for the brand's backend to show a signed-in customer or send them. Audited in their access log.
async fn link(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_privacy()?;
    let subject = subject(&state, &reference).await?;
    let (url, expires_at) = crate::me::issue_link(&state, &subject, Some(&caller.key)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"subject": subject, "url": url, "expires_at": format_time(expires_at)})),
    ))
}
