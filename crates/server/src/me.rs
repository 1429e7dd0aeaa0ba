//! The preference center's operations for one signed-in person, shared by the pages (`/me`) and
//! the JSON API (`/v1/me/…`): their choices per purpose, what is known about them and why, the
//! interests they tell, their recommendations with reasons, who accessed their data, and their
//! download and erasure requests. Everything is about the session's own subject: nothing here takes
//! a subject from the request, so no form can reach another person.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Catalog, Regime};
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod, ConsentStates, Status};
use tactful_domain::minimize;
use tactful_domain::policy::{Reason, Rule};
use tactful_domain::request::{RequestKind, RequestStatus, legal_hold_properties};
use tactful_domain::segment::format_time;
use tactful_domain::taxonomy::Taxonomy;
use tactful_store::{RequestRecord, SubjectState};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::personalize::FilterInput;
use crate::requests::{self, NewRequestInput};
use crate::routes::v1::requests::downloadable;
use crate::routes::v1::subjects::subject_context;

/// Values shown per kind of data before "and N more".
const SHOWN_VALUES: usize = 5;
/// Recommendations shown under "Why am I seeing this".
const SUGGESTIONS: usize = 6;
/// Longest value shown in full.
const SHORT: usize = 80;

/// The person's family state, or the error every `/me` route gives when it is gone (erased).
pub async fn person(state: &AppState, subject: &str) -> Result<SubjectState, ApiError> {
    state.store.subject_state(subject).await?.ok_or_else(|| ApiError::new(ErrorCode::SessionExpired))
}

/// A purpose as the person can switch it.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub purpose: String,
    pub name: String,
    pub description: String,
    pub benefit: String,
    /// `always_on` (needed for the service), `on`, `off`, `not_asked` (off until you say yes),
    /// `ask_again` (the wording changed), or `not_available` (one of the brand's rules).
    pub state: &'static str,
    pub on: bool,
    /// Whether the person can switch it.
    pub switchable: bool,
    /// What the state means, in plain words.
    pub explained: String,
    pub since: Option<String>,
    pub receipt: Option<String>,
}

/// The person's choices, one per declared purpose, as the policy applies them now.
pub fn choices(state: &AppState, found: &SubjectState, now: i64) -> Vec<Choice> {
    let catalog = &state.catalog;
    let folded = ConsentStates::fold(&found.ledger);
    let context = subject_context(state, found);
    let regime = context.jurisdiction.map(|index| catalog.jurisdictions()[index].regime);
    catalog
        .purposes()
        .iter()
        .enumerate()
        .map(|(index, purpose)| {
            let record = folded.get(&purpose.key);
            let since = record.map(|r| format_time(r.at));
            let receipt = record.map(|r| r.id().to_owned());
            // A purpose the brand's own rules forbid for this person, whatever they choose.
            let serving: Vec<_> = catalog
                .properties()
                .iter()
                .filter(|p| p.purposes.iter().any(|k| tactful_domain::taxonomy::covers(k, &purpose.key)))
                .collect();
            let blocked = !serving.is_empty()
                && serving.iter().all(|p| {
                    matches!(
                        state.policy.rule(context.jurisdiction, context.minor, p.id, index),
                        Rule::Deny(Reason::Guardrail(_) | Reason::NoPersonalDataInAnalytics)
                    )
                });
            let (code, on, explained): (&'static str, bool, String) = if purpose.is_essential() {
                ("always_on", true, "Needed to provide the service. To end it, delete your data.".into())
            } else if blocked {
                let why = serving
                    .iter()
                    .find_map(|p| match state.policy.rule(context.jurisdiction, context.minor, p.id, index) {
                        Rule::Deny(Reason::Guardrail(g)) => {
                            catalog.guardrails().get(usize::from(g)).and_then(|g| g.description.clone())
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| "Where you live, we do not use personal data for this.".into());
                ("not_available", false, why)
            } else {
                match folded.status(&purpose.key, purpose.version, now) {
                    Status::Given { current: true, .. } => ("on", true, "On: you said yes.".into()),
                    Status::Given { current: false, .. } => (
                        "ask_again",
                        false,
                        "We changed how we describe this, so it is off until you choose again.".into(),
                    ),
                    Status::Withdrawn => ("off", false, "Off: you said no.".into()),
                    Status::Expired => ("off", false, "Off: your yes has expired.".into()),
                    Status::NoSignal => match regime {
                        Some(Regime::OptOut) => {
                            ("on", true, "On unless you say no, as the law where you live allows.".into())
                        }
                        _ => ("not_asked", false, "Off until you say yes.".into()),
                    },
                }
            };
            Choice {
                purpose: purpose.key.clone(),
                name: purpose.name.clone(),
                description: purpose.description.clone(),
                benefit: purpose.benefit.clone(),
                state: code,
                on,
                switchable: code != "always_on" && code != "not_available",
                explained,
                since,
                receipt,
            }
        })
        .collect()
}

/// Switches purposes on (`true`) or off, as the person chose in the preference center. Only
/// switches that change something are recorded; each gets a signed receipt. Returns the receipts.
pub async fn choose(
    state: &AppState,
    found: &SubjectState,
    changes: &[(String, bool)],
) -> Result<Vec<Value>, ApiError> {
    if changes.is_empty() || changes.len() > state.catalog.purposes().len() {
        return Err(ApiError::with_message(ErrorCode::InvalidRequest, "choose at least one purpose"));
    }
    let now = crate::now_millis();
    let current = choices(state, found, now);
    let folded = ConsentStates::fold(&found.ledger);
    let mut events = Vec::new();
    for (key, on) in changes {
        let choice = current.iter().find(|c| &c.purpose == key).ok_or_else(|| {
            ApiError::with_message(ErrorCode::UnknownPurpose, format!("there is no purpose {key:?}"))
        })?;
        if !choice.switchable {
            return Err(ApiError::with_message(
                ErrorCode::InvalidRequest,
                format!("{} cannot be switched: {}", choice.name, choice.explained),
            ));
        }
        // Recording what the ledger already says would only add noise to it; a "no" never
        // recorded before is recorded, so declining gets a receipt too.
        let already = match folded.get(key).map(|r| r.kind) {
            Some(ConsentKind::Given | ConsentKind::Renewed) => *on && choice.state == "on",
            Some(ConsentKind::Withdrawn) => !*on,
            _ => false,
        };
        if already {
            continue;
        }
        let purpose = state.catalog.purpose(key).ok_or_else(|| ApiError::new(ErrorCode::UnknownPurpose))?;
        let kind = match (on, choice.state) {
            (false, _) => ConsentKind::Withdrawn,
            (true, "ask_again") => ConsentKind::Renewed,
            (true, _) => ConsentKind::Given,
        };
        events.push(ConsentEvent {
            id: tactful_store::new_receipt_id(),
            purpose: purpose.key.clone(),
            kind,
            method: ConsentMethod::PreferenceCenter,
            at: now,
            expires_at: None,
            version: purpose.version,
            source: Some("preference_center".into()),
            jurisdiction: found.jurisdiction.clone(),
        });
    }
    if events.is_empty() {
        return Ok(Vec::new());
    }
    crate::routes::v1::subjects::record(state, found, events).await
}

/// A kind of data held about the person.
#[derive(Debug, Clone, Serialize)]
pub struct Known {
    pub category: String,
    pub name: String,
    pub sensitive: bool,
    /// What is held, newest first: values, or what happened and when.
    pub items: Vec<KnownItem>,
    /// Items not shown.
    pub more: usize,
    /// Why it is used (purpose names) and what the person gets from it.
    pub used_for: Vec<String>,
    pub kept_for: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KnownItem {
    /// What the value is ("Your email address", "Products you looked at").
    pub label: String,
    pub value: String,
    /// When it was last seen (RFC 3339), empty for identifiers.
    pub at: String,
    /// How many times it was seen.
    pub times: u32,
}

/// Everything held about the person, grouped by data category, each with why it is used and how
/// long it is kept: each distinct value once, newest first, with how often it was seen. The
/// person's own data, opened for them alone.
pub async fn known(state: &AppState, subject: &str) -> Result<Vec<Known>, ApiError> {
    let catalog = &state.catalog;
    let data =
        state.store.subject_data(subject).await?.ok_or_else(|| ApiError::new(ErrorCode::SessionExpired))?;
    // category → ((label, value) → (last seen, times)), and the paths seen.
    type Seen = BTreeMap<(String, String), (i64, u32)>;
    let mut groups: BTreeMap<String, (Seen, BTreeSet<String>)> = BTreeMap::new();
    let mut note = |category: &str, path: Option<&str>, label: String, value: String, at: i64| {
        let entry = groups.entry(category.to_owned()).or_default();
        if let Some(path) = path {
            entry.1.insert(path.to_owned());
        }
        let seen = entry.0.entry((label, value)).or_insert((at, 0));
        seen.0 = seen.0.max(at);
        seen.1 += 1;
    };
    for identity in data.open_identities(&state.vault)? {
        let category = match identity.kind.as_str() {
            "user_id" => "user.unique_id",
            "anonymous_id" => "user.unique_id.pseudonymous",
            other => catalog
                .properties()
                .iter()
                .find(|p| p.identifier.as_ref().is_some_and(|k| k.as_str() == other))
                .map_or("user.unique_id", |p| p.category.as_str()),
        };
        let label = match identity.kind.as_str() {
            "user_id" => "Your account id".to_owned(),
            "anonymous_id" => "A random id of your browser or app".to_owned(),
            other => format!("Identifies you ({other})"),
        };
        note(category, None, label, short(identity.value.as_str()), 0);
    }
    for value in data.open_profile(&state.vault)? {
        let Some(property) = catalog.property_by_path(&value.path) else { continue };
        note(
            &property.category,
            Some(&property.path),
            label_of(property),
            shown(&value.value),
            value.updated_at,
        );
    }
    for event in data.open_events(&state.vault)? {
        let Value::Object(mut record) = event.record else { continue };
        minimize::retain_declared(catalog, &mut record);
        for property in catalog.properties() {
            for found in minimize::values_at(&record, &property.path) {
                note(
                    &property.category,
                    Some(&property.path),
                    label_of(property),
                    shown(found),
                    event.timestamp,
                );
            }
        }
    }
    let taxonomy = Taxonomy::builtin();
    Ok(groups
        .into_iter()
        .map(|(category, (seen, paths))| {
            let mut items: Vec<KnownItem> = seen
                .into_iter()
                .map(|((label, value), (at, times))| KnownItem {
                    label,
                    value,
                    at: if at > 0 { format_time(at) } else { String::new() },
                    times,
                })
                .collect();
            items.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.times.cmp(&a.times)));
            let total = items.len();
            items.truncate(SHOWN_VALUES);
            let properties: Vec<_> = catalog
                .properties()
                .iter()
                .filter(|p| p.category == category && (paths.is_empty() || paths.contains(&p.path)))
                .collect();
            let mut used_for: Vec<String> = properties
                .iter()
                .flat_map(|p| p.purposes.iter())
                .filter_map(|key| catalog.purpose(key).map(|p| p.name.clone()))
                .collect();
            used_for.sort();
            used_for.dedup();
            if used_for.is_empty() {
                used_for.push("Recognizing you when you come back".into());
            }
            let kept_for =
                properties.iter().map(|p| p.retention).max().map(|r| r.in_words()).unwrap_or_default();
            Known {
                name: taxonomy.category(&category).map_or_else(|| category.clone(), |e| e.name.to_owned()),
                sensitive: properties.iter().any(|p| p.sensitive),
                more: total.saturating_sub(items.len()),
                items,
                used_for,
                kept_for,
                category,
            }
        })
        .collect())
}

/// What a property is, for the person: its description, or its name made readable
/// (`properties.products[].price` → "Price").
fn label_of(property: &tactful_domain::catalog::Property) -> String {
    property.description.clone().unwrap_or_else(|| {
        let last = property.path.rsplit('.').next().unwrap_or(&property.path).trim_end_matches("[]");
        let words = last.replace('_', " ");
        let mut chars = words.chars();
        chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
    })
}

/// A value as one line of text.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => short(text),
        Value::Array(items) => short(&items.iter().map(shown).collect::<Vec<_>>().join(", ")),
        Value::Object(fields) => short(
            &fields
                .iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, v)| format!("{k}: {}", shown(v)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => other.to_string(),
    }
}

fn short(text: &str) -> String {
    if text.chars().count() <= SHORT {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(SHORT - 1).collect();
        cut.push('…');
        cut
    }
}

/// The interests the person told, and the topics they can choose from.
#[derive(Debug, Clone, Serialize)]
pub struct Interests {
    pub declared: Vec<String>,
    pub topics: Vec<Topic>,
    /// Whether recommendations may use them now; if not, why (in plain words).
    pub used: bool,
    pub not_used_because: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Topic {
    pub name: String,
    /// A sensitive topic: used only because the person said so, never inferred.
    pub sensitive: bool,
    pub chosen: bool,
}

/// Most interests one person may declare, and longest interest.
const MAX_INTERESTS: usize = 50;
const MAX_INTEREST_LEN: usize = 60;

/// The person's declared interests, if the catalog declares where they live.
pub async fn interests(state: &AppState, found: &SubjectState) -> Result<Option<Interests>, ApiError> {
    let Some(engine) = &state.personalization else { return Ok(None) };
    let Some(path) = engine.settings.interests.map(|p| state.catalog.property(p).path.clone()) else {
        return Ok(None);
    };
    let declared = declared_interests(state, &found.subject, &path).await?;
    let mut topics: BTreeMap<String, bool> = engine.topics().into_iter().collect();
    for interest in &declared {
        topics.entry(interest.clone()).or_insert(false);
    }
    let refusal = engine.refusal(state, found, crate::now_millis());
    Ok(Some(Interests {
        topics: topics
            .into_iter()
            .map(|(name, sensitive)| Topic { chosen: declared.contains(&name), name, sensitive })
            .collect(),
        declared,
        used: refusal.is_none(),
        not_used_because: refusal.map(|reason| reason_in_words(state, reason)),
    }))
}

async fn declared_interests(state: &AppState, subject: &str, path: &str) -> Result<Vec<String>, ApiError> {
    let Some(data) = state.store.subject_summary(subject).await? else { return Ok(Vec::new()) };
    let profile = data.open_profile(&state.vault)?;
    Ok(profile
        .into_iter()
        .find(|value| value.path == path)
        .map(|value| match value.value {
            Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            Value::String(one) => vec![one],
            _ => Vec::new(),
        })
        .unwrap_or_default())
}

/// Replaces the person's declared interests. They are stored only while the purpose they serve is
/// permitted (as any property is), and feed the model at once.
pub async fn set_interests(
    state: &AppState,
    found: &SubjectState,
    interests: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let engine =
        state.personalization.as_ref().ok_or_else(|| ApiError::new(ErrorCode::PersonalizationOff))?;
    let property = engine.settings.interests.ok_or_else(|| {
        ApiError::with_message(ErrorCode::PersonalizationOff, "the catalog declares no interests property")
    })?;
    // Recommendations match interests to item categories exactly: a topic typed in another case
    // takes the catalogue's spelling, anything else is kept as typed.
    let topics = engine.topics();
    let mut cleaned: Vec<String> = interests
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .map(|i| {
            topics
                .iter()
                .find(|(topic, _)| topic.to_lowercase() == i.to_lowercase())
                .map_or(i, |(t, _)| t.as_str())
        })
        .map(str::to_owned)
        .collect();
    cleaned.sort();
    cleaned.dedup_by(|a, b| a.to_lowercase() == b.to_lowercase());
    if cleaned.len() > MAX_INTERESTS
        || cleaned.iter().any(|i| i.chars().count() > MAX_INTEREST_LEN || i.chars().any(char::is_control))
    {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("tell at most {MAX_INTERESTS} interests of at most {MAX_INTEREST_LEN} characters each"),
        ));
    }
    let now = crate::now_millis();
    let context = subject_context(state, found);
    let consents = state.policy.consents(&context, now);
    if let Err(reason) = state.policy.storable(&context, &consents, property) {
        return Err(ApiError::with_message(
            ErrorCode::NotPermitted,
            format!(
                "we keep interests only for {}: {}",
                state.catalog.property(property).purposes.join(", "),
                reason_in_words(state, reason)
            ),
        ));
    }
    let path = state.catalog.property(property).path.clone();
    let entry = AuditEvent::PreferenceCenter {
        subject: state.vault.subject_pseudonym(&found.subject),
        action: "interests_changed".into(),
        actor: None,
    };
    state
        .store
        .set_profile_value(
            &found.subject,
            &path,
            Value::from(cleaned.clone()).to_string().into_bytes(),
            now,
            vec![entry],
        )
        .await?;
    crate::personalize::changed(state, &found.subject).await?;
    Ok(cleaned)
}

/// A policy reason in words for the person.
pub fn reason_in_words(state: &AppState, reason: Reason) -> String {
    match reason {
        Reason::NoConsent => "you have not switched this on".into(),
        Reason::ConsentWithdrawn => "you switched this off".into(),
        Reason::ConsentExpired => "your yes has expired".into(),
        Reason::ConsentOutdated => "we changed how we describe it, so we need your choice again".into(),
        Reason::NeedsExplicitConsent => "this needs your own explicit yes".into(),
        Reason::Restricted => "you asked us to pause the use of your data".into(),
        Reason::NoPersonalDataInAnalytics => "where you live, we do not use personal data for this".into(),
        Reason::Guardrail(index) => state
            .catalog
            .guardrails()
            .get(usize::from(index))
            .and_then(|g| g.description.clone())
            .unwrap_or_else(|| "one of our own rules forbids it".into()),
        Reason::PurposeNotServed | Reason::Role => "this data is not used for that".into(),
    }
}

/// What the person is shown, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestions {
    pub personalized: bool,
    pub not_personalized_because: Option<String>,
    pub items: Vec<Suggestion>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    pub id: String,
    pub name: String,
    /// The reason as the API gives it (`{"type": "you_told_us", "interest": "kitchen"}`).
    pub reason: Value,
    /// And in words.
    pub why: String,
}

/// The person's recommendations with their reasons (what a brand's page would show them).
pub async fn suggestions(state: &AppState, found: &SubjectState) -> Result<Option<Suggestions>, ApiError> {
    let Some(engine) = &state.personalization else { return Ok(None) };
    let refusal = engine.refusal(state, found, crate::now_millis());
    let person = if refusal.is_none() { engine.person(&found.subject) } else { None };
    let picked = engine.recommend(person.as_ref(), None, FilterInput::default(), SUGGESTIONS, 0);
    let mut items = Vec::with_capacity(picked.len());
    for pick in picked {
        let name = item_name(state, &pick.item.id).await?;
        let because = match pick.reason.get("item").and_then(Value::as_str) {
            Some(id) => Some((id.to_owned(), item_name(state, id).await?)),
            None => None,
        };
        let why = crate::personalize::reason_in_words(&pick.reason, &|id| match &because {
            Some((known, name)) if known == id => name.clone(),
            _ => id.to_owned(),
        });
        items.push(Suggestion { id: pick.item.id, name, reason: pick.reason, why });
    }
    Ok(Some(Suggestions {
        personalized: person.is_some(),
        not_personalized_because: refusal.map(|r| reason_in_words(state, r)),
        items,
    }))
}

/// An item's display name (its id when the catalogue has no name for it).
async fn item_name(state: &AppState, id: &str) -> Result<String, ApiError> {
    Ok(state.store.item(id).await?.map_or_else(|| id.to_owned(), |item| item.name))
}

/// One line of the person's access log.
#[derive(Debug, Clone, Serialize)]
pub struct Access {
    pub at: String,
    /// `read`, `consent`, `request`, `preference_center`, …
    pub kind: String,
    /// Who, in words ("The email marketing team", "You").
    pub who: String,
    /// What, in words.
    pub what: String,
    /// Why: the purpose's name.
    pub why: String,
    /// What came of it.
    pub outcome: String,
}

/// Who accessed the person's data, and what happened to it, newest first.
pub async fn access_log(state: &AppState, subject: &str, limit: usize) -> Result<Vec<Access>, ApiError> {
    let catalog = &state.catalog;
    let data = state
        .store
        .subject_summary(subject)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::SessionExpired))?;
    let entries = crate::export::access_log(state, &data).await?;
    let taxonomy = Taxonomy::builtin();
    let category_names = |list: Option<&Value>| -> String {
        let names: Vec<String> = list
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|c| c.as_str().or_else(|| c.get("category").and_then(Value::as_str)))
                    .map(|c| taxonomy.category(c).map_or_else(|| c.to_owned(), |e| e.name.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let mut names = names;
        names.dedup();
        names.join(", ")
    };
    let purpose_name = |key: &str| catalog.purpose(key).map_or_else(|| key.to_owned(), |p| p.name.clone());
    let text =
        |entry: &Value, name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut lines = Vec::new();
    for entry in entries.iter().take(limit) {
        let kind = text(entry, "kind");
        let at = text(entry, "at");
        let line = match kind.as_str() {
            "read" => {
                let role = text(entry, "role");
                let who = catalog
                    .role(&role)
                    .and_then(|r| r.description.clone())
                    .unwrap_or_else(|| format!("The {role} team"));
                let returned = category_names(entry.get("returned"));
                let withheld = category_names(entry.get("withheld"));
                let outcome = match text(entry, "decision").as_str() {
                    "permitted" => "Read".to_owned(),
                    "partial" => format!("Read; kept from them: {withheld}"),
                    _ => "Refused: nothing was shown".to_owned(),
                };
                Access {
                    at,
                    kind,
                    who,
                    what: if returned.is_empty() { withheld } else { returned },
                    why: purpose_name(&text(entry, "purpose")),
                    outcome,
                }
            }
            "consent" => {
                let method = text(entry, "method");
                let who = match method.as_str() {
                    "preference_center" | "explicit" => "You",
                    "gpc" => "Your browser (Global Privacy Control)",
                    "expired" => "Time",
                    _ => "We, recording what you told us",
                };
                Access {
                    at,
                    kind,
                    who: who.to_owned(),
                    what: "Your choice".into(),
                    why: purpose_name(&text(entry, "purpose")),
                    outcome: match text(entry, "change").as_str() {
                        "given" | "renewed" => "Switched on".into(),
                        "withdrawn" => "Switched off".into(),
                        "expired" => "Expired".into(),
                        other => other.to_owned(),
                    },
                }
            }
            "request" => Access {
                at,
                kind,
                who: "Our privacy team".into(),
                what: format!("Your request ({})", text(entry, "request_kind")),
                why: "Your rights".into(),
                outcome: text(entry, "note"),
            },
            "preference_center" => {
                let (who, what) = match text(entry, "action").as_str() {
                    "link_issued" => ("Us", "Sent you a link to these settings"),
                    "signed_in" => ("You", "Opened these settings"),
                    "signed_in_with_code" => ("You", "Opened these settings with a code"),
                    "interests_changed" => ("You", "Told us your interests"),
                    _ => ("You", "Used these settings"),
                };
                Access {
                    at,
                    kind,
                    who: who.into(),
                    what: what.into(),
                    why: "Your privacy settings".into(),
                    outcome: "Done".into(),
                }
            }
            _ => Access {
                at,
                kind: kind.clone(),
                who: "Us".into(),
                what: kind.replace('_', " "),
                why: String::new(),
                outcome: String::new(),
            },
        };
        lines.push(line);
    }
    Ok(lines)
}

/// One of the person's requests.
#[derive(Debug, Clone, Serialize)]
pub struct MyRequest {
    pub id: String,
    /// `export`, `erase`, …
    pub kind: String,
    pub status: String,
    /// The status in words.
    pub explained: String,
    pub received_at: String,
    pub due_at: String,
    pub completed_at: Option<String>,
    /// Whether the package can be downloaded now.
    pub download: bool,
}

fn my_request(record: &RequestRecord, now: i64) -> MyRequest {
    let explained = match (record.kind, record.status) {
        (_, RequestStatus::Received | RequestStatus::Running) => "We are working on it.",
        (_, RequestStatus::Verifying) => "Waiting for the code we sent you.",
        (_, RequestStatus::WaitingOnDestinations) => {
            "Done here; waiting for the other systems we connected to confirm."
        }
        (RequestKind::Access | RequestKind::Export, RequestStatus::Completed) => {
            if downloadable(record, now) {
                "Ready to download."
            } else {
                "Done; the download has expired (ask again for a fresh one)."
            }
        }
        (RequestKind::Erase, RequestStatus::Completed) => "Done: your data is deleted everywhere.",
        (_, RequestStatus::Completed) => "Done.",
        (_, RequestStatus::PartiallyCompleted) => {
            "Done here, but a connected system did not confirm in time; our privacy team follows up."
        }
        (_, RequestStatus::Failed) => "It could not be completed; our privacy team follows up.",
    };
    MyRequest {
        id: record.id.clone(),
        kind: record.kind.as_str().to_owned(),
        status: record.status.as_str().to_owned(),
        explained: explained.to_owned(),
        received_at: format_time(record.received_at),
        due_at: format_time(record.due_at),
        completed_at: record.completed_at.map(format_time),
        download: downloadable(record, now),
    }
}

/// The person's requests, newest first.
pub async fn my_requests(state: &AppState, subject: &str) -> Result<Vec<MyRequest>, ApiError> {
    let now = crate::now_millis();
    let mut records = state.store.requests(Some(subject), 50).await?;
    records.sort_by_key(|r| std::cmp::Reverse(r.received_at));
    Ok(records.iter().map(|r| my_request(r, now)).collect())
}

/// One request, if it is the person's (`subject`) — or, after an erasure ended their data and
/// session, the erasure they were given a token for. Anyone else's answers as if it did not exist.
pub async fn request_of(
    state: &AppState,
    subject: Option<&str>,
    erasure: Option<&str>,
    id: &str,
) -> Result<(MyRequest, RequestRecord), ApiError> {
    let view = state.store.request(id).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest))?;
    let record = view.record;
    let theirs = (subject.is_some() && record.subject.as_deref() == subject) || erasure == Some(id);
    if !theirs {
        return Err(ApiError::new(ErrorCode::UnknownRequest));
    }
    Ok((my_request(&record, crate::now_millis()), record))
}

/// Asks for a download of everything (`export`) or for erasure (`erase`). The person is signed
/// in, which the brand's link vouches for, so no further code is needed.
pub async fn ask(state: &AppState, subject: &str, kind: RequestKind) -> Result<String, ApiError> {
    if !matches!(kind, RequestKind::Export | RequestKind::Erase) {
        return Err(ApiError::with_message(ErrorCode::InvalidRequest, "ask for export or erase"));
    }
    let input = NewRequestInput {
        kind,
        subject: Some(subject.to_owned()),
        source: "preference_center".into(),
        details: json!({"suppress": false}),
        value: None,
        identifiers: Vec::new(),
        verify: None,
    };
    let id = requests::create(state, input).await?;
    state.wake_requests.notify_one();
    Ok(id)
}

/// What erasure keeps because the law requires it, in words: (kind of data, for how long).
pub fn kept_if_erased(catalog: &Catalog) -> Vec<(String, String)> {
    let taxonomy = Taxonomy::builtin();
    let mut kept: BTreeMap<String, tactful_domain::period::Retention> = BTreeMap::new();
    for id in legal_hold_properties(catalog) {
        let property = catalog.property(id);
        let name = taxonomy
            .category(&property.category)
            .map_or_else(|| property.category.clone(), |e| e.name.to_owned());
        let entry = kept.entry(name).or_insert(property.retention);
        *entry = (*entry).max(property.retention);
    }
    kept.into_iter().map(|(name, retention)| (name, retention.in_words())).collect()
}

/// What an erasure actually kept under legal hold, in words: (kind of data, until when), one line
/// per kind with the latest date.
pub async fn kept_by(state: &AppState, record: &RequestRecord) -> Result<Vec<(String, String)>, ApiError> {
    let Some(subject) = record.subject.as_deref().filter(|_| record.kind == RequestKind::Erase) else {
        return Ok(Vec::new());
    };
    let taxonomy = Taxonomy::builtin();
    let mut kept: BTreeMap<String, i64> = BTreeMap::new();
    for hold in state.store.legal_holds(subject).await? {
        for category in &hold.categories {
            let name = taxonomy.category(category).map_or_else(|| category.clone(), |e| e.name.to_owned());
            let until = kept.entry(name).or_insert(hold.retain_until);
            *until = (*until).max(hold.retain_until);
        }
    }
    Ok(kept.into_iter().map(|(name, until)| (name, format!("until {}", &format_time(until)[..10]))).collect())
}

/// Records that a link was issued to (or used by) a person.
pub fn audit(state: &AppState, subject: &str, action: &str, actor: Option<&str>) -> AuditEvent {
    AuditEvent::PreferenceCenter {
        subject: state.vault.subject_pseudonym(subject),
        action: action.to_owned(),
        actor: actor.map(str::to_owned),
    }
}

/// Issues a signed link to a person's preference center, valid for the configured minutes, and
/// records who issued it. Returns the link and when it expires.
pub async fn issue_link(
    state: &AppState,
    subject: &str,
    actor: Option<&str>,
) -> Result<(String, i64), ApiError> {
    let found =
        state.store.subject_state(subject).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
    let now = crate::now_millis();
    let expires_at = now + state.web.link_ttl_ms;
    let token = crate::session::issue(&state.vault, crate::session::Kind::Link, &found.subject, expires_at);
    state.store.audit_append(vec![audit(state, &found.subject, "link_issued", actor)], now).await?;
    Ok((format!("{}/me?t={token}", state.web.public_url), expires_at))
}

/// How long a sign-in code works, and how many tries it allows.
pub const SIGN_IN_CODE_TTL_MS: i64 = 15 * 60_000;
pub const SIGN_IN_ATTEMPTS: u32 = 5;

/// Starts a sign-in with a one-time code sent to `address` (an email address or a phone number).
/// The answer is the same whether or not the address belongs to a customer: a record is made
/// either way (one for an unknown address never works), and only a known person gets a message.
/// Returns the record's id, for the browser to hold while the person types the code.
pub async fn start_sign_in(state: &AppState, address: &str) -> Result<String, ApiError> {
    let address = address.trim();
    let reference =
        if address.contains('@') { format!("email:{address}") } else { format!("phone:{address}") };
    let (kind, value) = crate::auth::identifier(state, &reference).map_err(|_| {
        ApiError::with_message(
            ErrorCode::InvalidIdentifier,
            "type the email address or phone number you gave us",
        )
    })?;
    let known = state.store.subject_by_identifier(state.vault.blind(kind.as_str(), &value)).await?;
    let subject = match known {
        Some(found) => state.store.subject_state(&found).await?.map(|found| found.subject),
        None => None,
    };
    let now = crate::now_millis();
    let id = tactful_vault::new_subject_id().replacen("sub_", "si_", 1);
    let (code, hash) = state.vault.new_verification_code(&id);
    state
        .store
        .create_sign_in_code(tactful_store::SignInCode {
            id: id.clone(),
            subject: subject.clone(),
            hash,
            created_at: now,
            expires_at: now + SIGN_IN_CODE_TTL_MS,
        })
        .await?;
    if subject.is_some() {
        let brand = &state.catalog.brand().name;
        let body = tactful_vault::Zeroizing::new(format!(
            "Your code to open your privacy settings at {brand} is {} {}. It works once, for {} minutes.\n\nIf you did not ask for it, you can ignore this message: nobody can sign in without the code.",
            &code[..4],
            &code[4..],
            SIGN_IN_CODE_TTL_MS / 60_000
        ));
        let notification = crate::notify::Notification {
            channel: kind.as_str().to_owned(),
            to: tactful_vault::Zeroizing::new(value),
            reference: id.clone(),
            subject: format!("Your code for {brand}"),
            body,
        };
        if let Err(error) = state.notifier.send(&notification).await {
            return Err(ApiError::internal(format!("cannot send a sign-in code: {error}")));
        }
    }
    Ok(id)
}

/// What a typed sign-in code came to.
pub enum SignedIn {
    /// Signed in as this family root.
    As(String),
    /// Not the code; tries left.
    Wrong(u32),
    /// The code no longer works (expired, used, too many tries): ask for a new one.
    Over,
}

/// Checks a typed code for sign-in `id`; a right one is used up and recorded in the access log.
pub async fn finish_sign_in(state: &AppState, id: &str, code: &str) -> Result<SignedIn, ApiError> {
    let now = crate::now_millis();
    let hash = state.vault.verification_code_hash(id, code);
    Ok(match state.store.try_sign_in_code(id, hash, now, SIGN_IN_ATTEMPTS).await? {
        tactful_store::CodeOutcome::Accepted(subject) => match state.store.subject_state(&subject).await? {
            Some(found) => {
                state
                    .store
                    .audit_append(vec![audit(state, &found.subject, "signed_in_with_code", None)], now)
                    .await?;
                SignedIn::As(found.subject)
            }
            None => SignedIn::Over,
        },
        tactful_store::CodeOutcome::Wrong { tries_left } => SignedIn::Wrong(tries_left),
        tactful_store::CodeOutcome::Refused => SignedIn::Over,
    })
}

/// What a browser's Global Privacy Control signal (`Sec-GPC: 1`) did when the person opened their
/// settings: the sale-or-sharing purposes it switched off now (recorded as `gpc`, with receipts, as
/// ingestion records it), and those it left on because the person said yes to them themselves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Gpc {
    pub switched_off: Vec<String>,
    pub kept_your_yes: Vec<String>,
}

/// Applies a GPC signal the way ingestion does; returns what it did, in purpose names.
pub async fn apply_gpc(state: &AppState, found: &SubjectState) -> Result<Gpc, ApiError> {
    let now = crate::now_millis();
    let folded = ConsentStates::fold(&found.ledger);
    let mut gpc = Gpc::default();
    let mut events = Vec::new();
    for signal in tactful_domain::consent::gpc_signals(&state.catalog) {
        let Some(purpose) = state.catalog.purpose(&signal.purpose) else { continue };
        if folded.changes(&signal, purpose.version, now) {
            gpc.switched_off.push(purpose.name.clone());
            events.push(ConsentEvent {
                id: tactful_store::new_receipt_id(),
                purpose: purpose.key.clone(),
                kind: signal.kind,
                method: signal.method,
                at: now,
                expires_at: None,
                version: purpose.version,
                source: Some("preference_center".into()),
                jurisdiction: found.jurisdiction.clone(),
            });
        } else if matches!(
            folded.status(&purpose.key, purpose.version, now),
            Status::Given { explicit: true, .. }
        ) {
            gpc.kept_your_yes.push(purpose.name.clone());
        }
    }
    if !events.is_empty() {
        crate::routes::v1::subjects::record(state, found, events).await?;
    }
    Ok(gpc)
}
