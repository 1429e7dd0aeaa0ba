//! What the brand asks of the engine, for a stated purpose: recommendations for a person (only
//! personalized when they permit it now; in their access log either way), items like an item, and
//! the next message for a person's lifecycle stage through a channel they permit.

use serde_json::{Value, json};
use tactful_domain::catalog::MAX_N;
use tactful_domain::segment::format_time;
use tactful_domain::taxonomy::covers;
use tactful_personalize::lifecycle::{self, Stage, Thresholds};

use super::{FilterInput, ModelInfo, Personalization, Picked, lifecycle_thresholds};
use crate::error::{AppError, ErrorCode};
use crate::{App, Caller, subjects};

/// The engine, or the error saying the catalog declares none.
pub fn engine(app: &App) -> Result<&std::sync::Arc<Personalization>, AppError> {
    app.personalization.as_ref().ok_or_else(|| AppError::new(ErrorCode::PersonalizationOff))
}

/// The purpose named, checked: declared, a personalization purpose, usable by the caller's role.
fn purpose_for(
    app: &App,
    caller: &Caller,
    engine: &Personalization,
    named: Option<&str>,
) -> Result<String, AppError> {
    let (key, index) = subjects::purpose(app, named)?;
    if !covers(&engine.settings.purpose, key) && !covers(key, &engine.settings.purpose) {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            format!("recommendations serve {:?}, not {key:?}", engine.settings.purpose),
        ));
    }
    if !app.policy.role_may_use(&caller.role, index) {
        return Err(AppError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not use {key}", caller.role.name),
        ));
    }
    Ok(key.to_owned())
}

fn page(n: Option<i64>, default: u32, offset: i64) -> Result<(usize, usize), AppError> {
    let n = n.unwrap_or(i64::from(default));
    if !(1..=i64::from(MAX_N)).contains(&n) {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            format!("n must be between 1 and {MAX_N}"),
        ));
    }
    if !(0..=10_000).contains(&offset) {
        return Err(AppError::with_message(ErrorCode::InvalidRequest, "offset must be between 0 and 10000"));
    }
    Ok((n as usize, offset as usize))
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

fn model_json(info: &ModelInfo) -> Value {
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

fn unknown_item(id: &str) -> AppError {
    AppError::with_message(ErrorCode::UnknownItem, format!("there is no item {id:?} in the catalogue"))
}

/// What a recommendation request asks.
#[derive(Debug, Clone, Default)]
pub struct Recommendations {
    pub purpose: Option<String>,
    /// The person (`sub_…` or an identifier), if any.
    pub subject: Option<String>,
    pub placement: Option<String>,
    pub n: Option<i64>,
    pub offset: i64,
    /// The item being looked at.
    pub item: Option<String>,
    pub filter: FilterInput,
}

/// Items for a person (personalized only when they permit it now), an anonymous visitor or nobody in
/// particular, each with its reason. A read about a person is in their access log.
pub async fn recommendations(app: &App, caller: &Caller, ask: Recommendations) -> Result<Value, AppError> {
    let engine = engine(app)?;
    let purpose = purpose_for(app, caller, engine, ask.purpose.as_deref())?;
    let placement = match ask.placement.as_deref() {
        Some(key) => Some(engine.settings.placement(key).ok_or_else(|| {
            let declared: Vec<&str> = engine.settings.placements.iter().map(|p| p.key.as_str()).collect();
            AppError::with_message(
                ErrorCode::UnknownPlacement,
                format!("the catalog declares no placement {key:?}; declared: {}", declared.join(", ")),
            )
        })?),
        None => None,
    };
    let (n, offset) = page(ask.n, placement.map_or(10, |p| p.n), ask.offset)?;
    let context = ask.item.as_deref().map(str::trim).filter(|i| !i.is_empty());
    if let Some(item) = context {
        if !engine.knows(item) {
            return Err(unknown_item(item));
        }
    } else if placement.is_some_and(|p| p.context) {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            "this placement shows items like the one being looked at: pass item=ID",
        ));
    }
    let mut filter = ask.filter;
    if filter.categories.is_empty() {
        filter.categories = placement.map(|p| p.categories.clone()).unwrap_or_default();
    }
    let now = app.now();
    let (subject, person, refusal) = match ask.subject.as_deref() {
        Some(reference) => {
            let found = subjects::state_of(app, reference).await?;
            let refusal = engine.refusal(app, &found, now);
            let person = if refusal.is_none() { engine.person(&found.subject) } else { None };
            (Some(found.subject), person, refusal)
        }
        None => (None, None, None),
    };
    let picked = engine.recommend(person.as_ref(), context, filter, n, offset);
    if let Some(subject) = &subject {
        let used_interests = person.as_ref().is_some_and(|p| !p.interests.is_empty());
        let categories = engine.categories_used(&app.catalog, used_interests);
        let mut read = crate::reads::Read::new(app, &crate::reads::Reader::Key(caller), &purpose, subject);
        match refusal {
            None => categories.iter().for_each(|category| read.returned(category)),
            Some(reason) => {
                let reason = app.policy.describe(reason);
                categories.iter().for_each(|category| read.withheld(category, &reason, 1));
            }
        }
        read.commit().await?;
    }
    Ok(json!({
        "purpose": purpose,
        "subject": subject,
        "placement": placement.map(|p| p.key.clone()),
        "personalized": person.is_some(),
        "not_personalized_because": refusal.map(|r| app.policy.describe(r)),
        "items": items_json(&picked),
        "next_offset": (picked.len() == n).then_some(offset + n),
        "model": model_json(&engine.info_now()),
    }))
}

/// What a similar-items request asks.
#[derive(Debug, Clone, Default)]
pub struct Similar {
    pub purpose: Option<String>,
    pub n: Option<i64>,
    pub offset: i64,
    pub filter: FilterInput,
}

/// Customers who had this also had… (released pairs only), then what is popular in its category.
/// About no one, so not in anyone's access log.
pub async fn similar(app: &App, caller: &Caller, item: &str, ask: Similar) -> Result<Value, AppError> {
    let engine = engine(app)?;
    let purpose = purpose_for(app, caller, engine, ask.purpose.as_deref())?;
    let (n, offset) = page(ask.n, 10, ask.offset)?;
    if !engine.knows(item) {
        return Err(unknown_item(item));
    }
    let picked = engine.similar(item, ask.filter, n, offset);
    Ok(json!({
        "purpose": purpose,
        "item": item,
        "items": items_json(&picked),
        "next_offset": (picked.len() == n).then_some(offset + n),
        "model": model_json(&engine.info_now()),
    }))
}

/// What a next-message request asks.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub channel: Option<String>,
    pub purpose: Option<String>,
}

/// The person's lifecycle stage and the first message rule that fits it, only through a channel
/// whose purpose they permit; when none may be sent, `message` is null and `reason` says why. In
/// the person's access log.
pub async fn next_message(
    app: &App,
    caller: &Caller,
    reference: &str,
    ask: Message,
) -> Result<Value, AppError> {
    let engine = engine(app)?;
    let settings = &engine.settings;
    let channel_key = ask.channel.as_deref().map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
        AppError::with_message(
            ErrorCode::InvalidRequest,
            "name the channel: channel=email (the channel's purpose is the purpose of this read)",
        )
    })?;
    let channel = settings.channel(channel_key).ok_or_else(|| {
        let declared: Vec<&str> = settings.channels.iter().map(|c| c.key.as_str()).collect();
        AppError::with_message(
            ErrorCode::UnknownChannel,
            format!("the catalog declares no channel {channel_key:?}; declared: {}", declared.join(", ")),
        )
    })?;
    if let Some(named) = ask.purpose.as_deref().filter(|p| *p != channel.purpose) {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            format!("channel {channel_key} serves {:?}, not {named:?}", channel.purpose),
        ));
    }
    let purpose =
        app.catalog.purpose_index(&channel.purpose).ok_or_else(|| AppError::new(ErrorCode::Internal))?;
    if !app.policy.role_may_use(&caller.role, purpose) {
        return Err(AppError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not use {}", caller.role.name, channel.purpose),
        ));
    }
    let found = subjects::state_of(app, reference).await?;
    let subject = found.subject.clone();
    let now = app.now();
    let context = subjects::context(app, &found);
    let consents = app.policy.consents(&context, now);
    let reach = app.policy.decide(&context, &consents, channel.address, purpose);
    // The stage is learned from what the person lets personalization use.
    let person = if engine.refusal(app, &found, now).is_none() { engine.person(&subject) } else { None };
    let (first, last) = person.as_ref().map_or((None, None), |p| (p.first_seen, p.last_seen));
    let thresholds = lifecycle_thresholds(&settings.lifecycle);
    let stage = lifecycle::stage(first, last, now, &thresholds);
    let interests: Vec<String> = person.as_ref().map(|p| p.interests.clone()).unwrap_or_default();
    let why_stage = stage_reason(stage, first, last, now, &thresholds);
    let rule = settings.messages.iter().filter(|m| m.channel == channel.key).find(|m| {
        m.stages.iter().any(|s| s == stage.as_str())
            && (m.interests.is_empty() || m.interests.iter().any(|i| interests.contains(i)))
    });
    let category = app.catalog.property(channel.address).category.clone();
    let mut read =
        crate::reads::Read::new(app, &crate::reads::Reader::Key(caller), &channel.purpose, &subject);
    let (message, reason) = match (&reach, rule) {
        (Err(reason), _) => {
            let described = app.policy.describe(*reason);
            read.withheld(&category, &described, 1);
            (
                Value::Null,
                json!({"code": described, "text": format!("{} may not be used for {}", channel.key, channel.purpose)}),
            )
        }
        (Ok(()), None) => {
            read.returned(&category);
            (
                Value::Null,
                json!({"code": "no_rule", "text": format!("no message rule for stage {} on {}", stage.as_str(), channel.key)}),
            )
        }
        (Ok(()), Some(rule)) => {
            read.returned(&category);
            let matched: Vec<&String> = rule.interests.iter().filter(|i| interests.contains(i)).collect();
            let text = match matched.first() {
                Some(interest) => format!("{why_stage}; you told us you like {interest}"),
                None => why_stage.clone(),
            };
            (
                json!({"key": rule.key, "channel": rule.channel, "title": rule.title, "body": rule.body}),
                json!({"code": "rule", "rule": rule.key, "text": text}),
            )
        }
    };
    read.commit().await?;
    Ok(json!({
        "subject": subject,
        "channel": channel.key,
        "purpose": channel.purpose,
        "stage": {"name": stage.as_str(), "why": why_stage},
        "message": message,
        "reason": reason,
    }))
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

/// Items are the brand's own catalogue, not personal data; writing them needs a role that may use
/// the personalization purpose.
fn may_write_items(app: &App, caller: &Caller, engine: &Personalization) -> Result<(), AppError> {
    if app.policy.role_may_use(&caller.role, engine.purpose) {
        Ok(())
    } else {
        Err(AppError::with_message(
            ErrorCode::Forbidden,
            format!(
                "role {:?} may not use {}, so may not change the item catalogue",
                caller.role.name, engine.settings.purpose
            ),
        ))
    }
}

/// Items one upsert may carry.
const MAX_ITEMS: usize = 1_000;

/// Adds or replaces one item (`id` from the path; the body's, if any, must agree).
pub async fn put_item(
    app: &App,
    caller: &Caller,
    id: &str,
    input: super::ItemInput,
) -> Result<Value, AppError> {
    let engine = engine(app)?;
    may_write_items(app, caller, engine)?;
    if input.id.as_deref().is_some_and(|body| body != id) {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            "the body's id differs from the path's",
        ));
    }
    let record = super::item_record(input, Some(id.to_owned()), app.now())
        .map_err(|m| AppError::with_message(ErrorCode::InvalidRequest, m))?;
    engine.write_items(app, &caller.key, vec![record]).await?;
    item(app, id).await
}

/// Adds or replaces up to 1,000 items at once (all or none). Returns how many were written.
pub async fn put_items(app: &App, caller: &Caller, items: Vec<super::ItemInput>) -> Result<usize, AppError> {
    let engine = engine(app)?;
    may_write_items(app, caller, engine)?;
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            format!("send 1 to {MAX_ITEMS} items"),
        ));
    }
    let now = app.now();
    let records = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| super::item_record(item, None, now).map_err(|m| format!("items[{i}]: {m}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| AppError::with_message(ErrorCode::InvalidRequest, m))?;
    Ok(engine.write_items(app, &caller.key, records).await?)
}

/// One item of the catalogue.
pub async fn item(app: &App, id: &str) -> Result<Value, AppError> {
    let engine = engine(app)?;
    let item = app.store.item(id).await?.ok_or_else(|| unknown_item(id))?;
    Ok(json!({
        "id": item.id,
        "name": item.name,
        "categories": item.categories,
        "sensitive": engine.is_sensitive(&item),
        "available": item.available,
        "price": item.price,
        "attributes": item.attributes,
        "updated_at": format_time(item.updated_at),
    }))
}
