//! Recommendations and messages, always for a stated purpose and audited when about a person:
//! `GET /v1/recommendations`, `GET /v1/items/{id}/similar`,
//! `GET /v1/subjects/{id}/next-message`, and the item catalogue (`PUT /v1/items/{id}`,
//! `POST /v1/items`, `GET /v1/items/{id}`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tactful_domain::audit::{AuditEvent, ReadDecision, Withheld};
use tactful_domain::catalog::MAX_N;
use tactful_domain::segment::format_time;
use tactful_domain::taxonomy::covers;
use tactful_personalize::lifecycle::{self, Stage, Thresholds};
use tactful_store::ItemRecord;

use super::subjects::{query, subject_context, unknown_purpose};
use crate::auth::{ApiJson, Caller, subject};
use crate::error::{ApiError, ErrorCode};
use crate::personalize::{FilterInput, ItemInput, Personalization, Picked, item_record};
use crate::{AppState, now_millis};

/// Items one upsert may carry.
const MAX_ITEMS: usize = 1_000;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/recommendations", get(recommendations))
        .route("/v1/items", post(put_items))
        .route("/v1/items/{id}", get(get_item).put(put_item))
        .route("/v1/items/{id}/similar", get(similar))
        .route("/v1/subjects/{id}/next-message", get(next_message))
}

fn engine(state: &AppState) -> Result<&Arc<Personalization>, ApiError> {
    state.personalization.as_ref().ok_or_else(|| ApiError::new(ErrorCode::PersonalizationOff))
}

#[derive(Debug, Deserialize)]
struct RecommendQuery {
    purpose: Option<String>,
    subject: Option<String>,
    placement: Option<String>,
    n: Option<i64>,
    #[serde(default)]
    offset: i64,
    /// The item being looked at.
    item: Option<String>,
    /// Comma-separated categories.
    category: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    /// Comma-separated item ids not to show.
    exclude: Option<String>,
    #[serde(default)]
    include_unavailable: bool,
}

/// The purpose named, checked: declared, a personalization purpose, usable by the caller's role.
fn purpose_for(
    state: &AppState,
    caller: &Caller,
    engine: &Personalization,
    named: Option<&str>,
) -> Result<String, ApiError> {
    let key = named
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::PurposeRequired))?;
    let index = state.catalog.purpose_index(key).ok_or_else(|| unknown_purpose(state, key))?;
    if !covers(&engine.settings.purpose, key) && !covers(key, &engine.settings.purpose) {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("recommendations serve {:?}, not {key:?}", engine.settings.purpose),
        ));
    }
    if !state.policy.role_may_use(&caller.role, index) {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not use {key}", caller.role.name),
        ));
    }
    Ok(key.to_owned())
}

fn page(n: Option<i64>, default: u32, offset: i64) -> Result<(usize, usize), ApiError> {
    let n = n.unwrap_or(i64::from(default));
    if !(1..=i64::from(MAX_N)).contains(&n) {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("n must be between 1 and {MAX_N}"),
        ));
    }
    if !(0..=10_000).contains(&offset) {
        return Err(ApiError::with_message(ErrorCode::InvalidRequest, "offset must be between 0 and 10000"));
    }
    Ok((n as usize, offset as usize))
}

fn list(text: Option<&str>) -> Vec<String> {
    text.map(|t| t.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

fn items_json(picked: &[Picked]) -> Value {
    Value::Array(
        picked
            .iter()
            .map(|p| {
                json!({
                    "id": p.item.id,
                    "categories": p.item.categories,
                    "price": p.item.price,
                    "score": (f64::from(p.score) * 10_000.0).round() / 10_000.0,
                    "reason": p.reason,
                })
            })
            .collect(),
    )
}

/// `GET /v1/recommendations?purpose=P[&subject=S][&placement=K][&n=N][&offset=O][&item=I]…`:
/// items for a person (personalized only when they permit it now), an anonymous visitor or
/// nobody in particular, each with its reason. A read about a person is in their access log.
async fn recommendations(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<Query<RecommendQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let engine = engine(&state)?;
    let purpose = purpose_for(&state, &caller, engine, params.purpose.as_deref())?;
    let placement = match params.placement.as_deref() {
        Some(key) => Some(engine.settings.placement(key).ok_or_else(|| {
            let declared: Vec<&str> = engine.settings.placements.iter().map(|p| p.key.as_str()).collect();
            ApiError::with_message(
                ErrorCode::UnknownPlacement,
                format!("the catalog declares no placement {key:?}; declared: {}", declared.join(", ")),
            )
        })?),
        None => None,
    };
    let (n, offset) = page(params.n, placement.map_or(10, |p| p.n), params.offset)?;
    let context = params.item.as_deref().map(str::trim).filter(|i| !i.is_empty());
    if let Some(item) = context {
        if !engine.knows(item) {
            return Err(ApiError::with_message(
                ErrorCode::UnknownItem,
                format!("there is no item {item:?} in the catalogue"),
            ));
        }
    } else if placement.is_some_and(|p| p.context) {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "this placement shows items like the one being looked at: pass item=ID",
        ));
    }
    let mut categories = list(params.category.as_deref());
    if categories.is_empty() {
        categories = placement.map(|p| p.categories.clone()).unwrap_or_default();
    }
    let filter = FilterInput {
        categories,
        include_unavailable: params.include_unavailable,
        min_price: params.min_price,
        max_price: params.max_price,
        exclude: list(params.exclude.as_deref()),
    };

    let now = now_millis();
    let (subject, person, refusal) = match params.subject.as_deref() {
        Some(reference) => {
            let subject = subject(&state, reference).await?;
            let found = state
                .store
                .subject_state(&subject)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
            let refusal = engine.refusal(&state, &found, now);
            let person = if refusal.is_none() { engine.person(&subject) } else { None };
            (Some(subject), person, refusal)
        }
        None => (None, None, None),
    };
    let picked = engine.recommend(person.as_ref(), context, filter, n, offset);
    if let Some(subject) = &subject {
        let used_interests = person.as_ref().is_some_and(|p| !p.interests.is_empty());
        let categories = engine.categories_used(&state.catalog, used_interests);
        let (returned, withheld, decision) = match refusal {
            None => (categories, Vec::new(), ReadDecision::Permitted),
            Some(reason) => {
                let reason = state.policy.describe(reason);
                let withheld = categories
                    .into_iter()
                    .map(|category| Withheld { category, reason: reason.clone(), count: 1 })
                    .collect();
                (Vec::new(), withheld, ReadDecision::Denied)
            }
        };
        let entry = AuditEvent::Read {
            actor: caller.key.clone(),
            role: caller.role.name.clone(),
            purpose: purpose.clone(),
            subject: state.vault.subject_pseudonym(subject),
            returned,
            withheld,
            decision,
        };
        state.store.audit_append(vec![entry], now).await?;
    }
    let info = engine.info_now();
    Ok(Json(json!({
        "purpose": purpose,
        "subject": subject,
        "placement": placement.map(|p| p.key.clone()),
        "personalized": person.is_some(),
        "not_personalized_because": refusal.map(|r| state.policy.describe(r)),
        "items": items_json(&picked),
        "next_offset": (picked.len() == n).then_some(offset + n),
        "model": model_json(&info),
    })))
}

fn model_json(info: &crate::personalize::ModelInfo) -> Value {
    json!({
        "people": info.people,
        "items": info.items,
        "released_at": format_time(info.released_at),
        "min_support": info.min_support,
        "cap": info.cap,
        "epsilon": info.epsilon,
        "delta": info.delta,
    })
}

#[derive(Debug, Deserialize)]
struct SimilarQuery {
    purpose: Option<String>,
    n: Option<i64>,
    #[serde(default)]
    offset: i64,
    category: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    exclude: Option<String>,
    #[serde(default)]
    include_unavailable: bool,
}

/// `GET /v1/items/{id}/similar?purpose=P[&n=N]`: customers who had this also had… (released pairs
/// only), then what is popular in its category. About no one, so not in anyone's access log.
async fn similar(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<SimilarQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let engine = engine(&state)?;
    let purpose = purpose_for(&state, &caller, engine, params.purpose.as_deref())?;
    let (n, offset) = page(params.n, 10, params.offset)?;
    if !engine.knows(&id) {
        return Err(ApiError::with_message(
            ErrorCode::UnknownItem,
            format!("there is no item {id:?} in the catalogue"),
        ));
    }
    let filter = FilterInput {
        categories: list(params.category.as_deref()),
        include_unavailable: params.include_unavailable,
        min_price: params.min_price,
        max_price: params.max_price,
        exclude: list(params.exclude.as_deref()),
    };
    let picked = engine.similar(&id, filter, n, offset);
    Ok(Json(json!({
        "purpose": purpose,
        "item": id,
        "items": items_json(&picked),
        "next_offset": (picked.len() == n).then_some(offset + n),
        "model": model_json(&engine.info_now()),
    })))
}

/// Items are the brand's own catalogue, not personal data; writing them needs a role that may use
/// the personalization purpose.
fn may_write_items(state: &AppState, caller: &Caller, engine: &Personalization) -> Result<(), ApiError> {
    if state.policy.role_may_use(&caller.role, engine.purpose) {
        Ok(())
    } else {
        Err(ApiError::with_message(
            ErrorCode::Forbidden,
            format!(
                "role {:?} may not use {}, so may not change the item catalogue",
                caller.role.name, engine.settings.purpose
            ),
        ))
    }
}

/// `PUT /v1/items/{id}`: adds or replaces one item.
async fn put_item(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ItemInput>,
) -> Result<Json<Value>, ApiError> {
    let engine = engine(&state)?;
    may_write_items(&state, &caller, engine)?;
    if input.id.as_deref().is_some_and(|body| body != id) {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "the body's id differs from the path's",
        ));
    }
    let record = item_record(input, Some(id.clone()), now_millis())
        .map_err(|m| ApiError::with_message(ErrorCode::InvalidRequest, m))?;
    engine.write_items(&state, &caller.key, vec![record]).await?;
    let stored = state.store.item(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::Internal))?;
    Ok(Json(item_json(&stored, engine)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsInput {
    items: Vec<ItemInput>,
}

/// `POST /v1/items` `{"items": [...]}`: adds or replaces up to 1,000 items at once (all or none).
async fn put_items(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(input): ApiJson<ItemsInput>,
) -> Result<Json<Value>, ApiError> {
    let engine = engine(&state)?;
    may_write_items(&state, &caller, engine)?;
    if input.items.is_empty() || input.items.len() > MAX_ITEMS {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("send 1 to {MAX_ITEMS} items"),
        ));
    }
    let now = now_millis();
    let records = input
        .items
        .into_iter()
        .enumerate()
        .map(|(i, item)| item_record(item, None, now).map_err(|m| format!("items[{i}]: {m}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| ApiError::with_message(ErrorCode::InvalidRequest, m))?;
    let count = engine.write_items(&state, &caller.key, records).await?;
    Ok(Json(json!({ "written": count })))
}

/// `GET /v1/items/{id}`.
async fn get_item(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = engine(&state)?;
    let item = state.store.item(&id).await?.ok_or_else(|| {
        ApiError::with_message(ErrorCode::UnknownItem, format!("there is no item {id:?} in the catalogue"))
    })?;
    Ok(Json(item_json(&item, engine)))
}

fn item_json(item: &ItemRecord, engine: &Personalization) -> Value {
    json!({
        "id": item.id,
        "name": item.name,
        "categories": item.categories,
        "sensitive": engine.is_sensitive(item),
        "available": item.available,
        "price": item.price,
        "attributes": item.attributes,
        "updated_at": format_time(item.updated_at),
    })
}

#[derive(Debug, Deserialize)]
struct MessageQuery {
    channel: Option<String>,
    purpose: Option<String>,
}

/// `GET /v1/subjects/{id}/next-message?channel=C`: the person's lifecycle stage and the first
/// message rule that fits it, only through a channel whose purpose they permit; when none may be
/// sent, `message` is null and `reason` says why. In the person's access log.
async fn next_message(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
    params: Result<Query<MessageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let engine = engine(&state)?;
    let settings = &engine.settings;
    let channel_key =
        params.channel.as_deref().map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::InvalidRequest,
                "name the channel: channel=email (the channel's purpose is the purpose of this read)",
            )
        })?;
    let channel = settings.channel(channel_key).ok_or_else(|| {
        let declared: Vec<&str> = settings.channels.iter().map(|c| c.key.as_str()).collect();
        ApiError::with_message(
            ErrorCode::UnknownChannel,
            format!("the catalog declares no channel {channel_key:?}; declared: {}", declared.join(", ")),
        )
    })?;
    if let Some(named) = params.purpose.as_deref().filter(|p| *p != channel.purpose) {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("channel {channel_key} serves {:?}, not {named:?}", channel.purpose),
        ));
    }
    let purpose =
        state.catalog.purpose_index(&channel.purpose).ok_or_else(|| ApiError::new(ErrorCode::Internal))?;
    if !state.policy.role_may_use(&caller.role, purpose) {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not use {}", caller.role.name, channel.purpose),
        ));
    }
    let subject = subject(&state, &reference).await?;
    let found =
        state.store.subject_state(&subject).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
    let now = now_millis();
    let context = subject_context(&state, &found);
    let consents = state.policy.consents(&context, now);
    let reach = state.policy.decide(&context, &consents, channel.address, purpose);
    // The stage is learned from what the person lets personalization use.
    let person = if engine.refusal(&state, &found, now).is_none() { engine.person(&subject) } else { None };
    let (first, last) = person.as_ref().map_or((None, None), |p| (p.first_seen, p.last_seen));
    let thresholds = crate::personalize::lifecycle_thresholds(&settings.lifecycle);
    let stage = lifecycle::stage(first, last, now, &thresholds);
    let interests: Vec<String> = person.as_ref().map(|p| p.interests.clone()).unwrap_or_default();
    let why_stage = stage_reason(stage, first, last, now, &thresholds);
    let rule = settings.messages.iter().filter(|m| m.channel == channel.key).find(|m| {
        m.stages.iter().any(|s| s == stage.as_str())
            && (m.interests.is_empty() || m.interests.iter().any(|i| interests.contains(i)))
    });
    let category = state.catalog.property(channel.address).category.clone();
    let (message, reason, entry_decision, returned, withheld) = match (&reach, rule) {
        (Err(reason), _) => {
            let described = state.policy.describe(*reason);
            let withheld = vec![Withheld { category: category.clone(), reason: described.clone(), count: 1 }];
            (
                Value::Null,
                json!({"code": described, "text": format!("{} may not be used for {}", channel.key, channel.purpose)}),
                ReadDecision::Denied,
                Vec::new(),
                withheld,
            )
        }
        (Ok(()), None) => (
            Value::Null,
            json!({"code": "no_rule", "text": format!("no message rule for stage {} on {}", stage.as_str(), channel.key)}),
            ReadDecision::Permitted,
            vec![category.clone()],
            Vec::new(),
        ),
        (Ok(()), Some(rule)) => {
            let matched: Vec<&String> = rule.interests.iter().filter(|i| interests.contains(i)).collect();
            let text = match matched.first() {
                Some(interest) => format!("{why_stage}; you told us you like {interest}"),
                None => why_stage.clone(),
            };
            (
                json!({"key": rule.key, "channel": rule.channel, "title": rule.title, "body": rule.body}),
                json!({"code": "rule", "rule": rule.key, "text": text}),
                ReadDecision::Permitted,
                vec![category.clone()],
                Vec::new(),
            )
        }
    };
    let entry = AuditEvent::Read {
        actor: caller.key.clone(),
        role: caller.role.name.clone(),
        purpose: channel.purpose.clone(),
        subject: state.vault.subject_pseudonym(&subject),
        returned,
        withheld,
        decision: entry_decision,
    };
    state.store.audit_append(vec![entry], now).await?;
    Ok(Json(json!({
        "subject": subject,
        "channel": channel.key,
        "purpose": channel.purpose,
        "stage": {"name": stage.as_str(), "why": why_stage},
        "message": message,
        "reason": reason,
    })))
}

fn stage_reason(stage: Stage, first: Option<i64>, last: Option<i64>, now: i64, t: &Thresholds) -> String {
    let days = |at: Option<i64>| at.map_or(0, |at| (now - at).max(0) / tactful_personalize::DAY_MS);
    match stage {
        Stage::Unknown => "nothing we may learn from yet".into(),
        Stage::New => format!("first seen {} days ago (new for {} days)", days(first), t.new_days),
        Stage::Active => format!("last seen {} days ago (active within {} days)", days(last), t.at_risk_days),
        Stage::AtRisk => format!("last seen {} days ago (at risk after {} days)", days(last), t.at_risk_days),
        Stage::Lapsed => format!("last seen {} days ago (lapsed after {} days)", days(last), t.lapsed_days),
    }
}
