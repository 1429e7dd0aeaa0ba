//! The interests a person tells (the strongest signal the model has: what they say beats what we
//! infer), and what they are shown because of them and of what they did, with reasons in words.

use super::*;

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
pub async fn interests(app: &App, found: &SubjectState) -> Result<Option<Interests>, AppError> {
    let Some(engine) = &app.personalization else { return Ok(None) };
    let Some(path) = engine.settings.interests.map(|p| app.catalog.property(p).path.clone()) else {
        return Ok(None);
    };
    let declared = declared_interests(app, &found.subject, &path).await?;
    let mut topics: BTreeMap<String, bool> = engine.topics().into_iter().collect();
    // Topics are in their normalized spelling; an interest kept as typed is the same topic.
    let chosen: Vec<String> = declared.iter().map(|i| normalize_category(i)).collect();
    for (interest, normal) in declared.iter().zip(&chosen) {
        if !topics.contains_key(normal) {
            topics.entry(interest.clone()).or_insert(false);
        }
    }
    let refusal = engine.refusal(app, found, app.now());
    Ok(Some(Interests {
        topics: topics
            .into_iter()
            .map(|(name, sensitive)| Topic {
                chosen: chosen.contains(&normalize_category(&name)),
                name,
                sensitive,
            })
            .collect(),
        declared,
        used: refusal.is_none(),
        not_used_because: refusal.map(|reason| reason_in_words(app, reason)),
    }))
}

async fn declared_interests(app: &App, subject: &str, path: &str) -> Result<Vec<String>, AppError> {
    let Some(data) = app.store.subject_summary(subject).await? else { return Ok(Vec::new()) };
    let profile = data.open_profile(&app.vault)?;
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
    app: &App,
    found: &SubjectState,
    interests: Vec<String>,
) -> Result<Vec<String>, AppError> {
    let engine = app.personalization.as_ref().ok_or_else(|| AppError::new(ErrorCode::PersonalizationOff))?;
    let property = engine.settings.interests.ok_or_else(|| {
        AppError::with_message(ErrorCode::PersonalizationOff, "the catalog declares no interests property")
    })?;
    // Recommendations match interests to item categories in their normalized spelling: a topic
    // typed in another spelling takes the catalogue's, anything else is kept as typed.
    let topics = engine.topics();
    let mut cleaned: Vec<String> = interests
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .map(|i| {
            let normal = normalize_category(i);
            topics.iter().find(|(topic, _)| *topic == normal).map_or(i, |(t, _)| t.as_str())
        })
        .map(str::to_owned)
        .collect();
    cleaned.sort_by_cached_key(|i| (normalize_category(i), i.clone()));
    cleaned.dedup_by(|a, b| normalize_category(a) == normalize_category(b));
    if cleaned.len() > MAX_INTERESTS
        || cleaned.iter().any(|i| i.chars().count() > MAX_INTEREST_LEN || i.chars().any(char::is_control))
    {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            format!("tell at most {MAX_INTERESTS} interests of at most {MAX_INTEREST_LEN} characters each"),
        ));
    }
    let now = app.now();
    let context = subject_context(app, found);
    let consents = app.policy.consents(&context, now);
    if let Err(reason) = app.policy.storable(&context, &consents, property) {
        return Err(AppError::with_message(
            ErrorCode::NotPermitted,
            format!(
                "we keep interests only for {}: {}",
                app.catalog.property(property).purposes.join(", "),
                reason_in_words(app, reason)
            ),
        ));
    }
    let path = app.catalog.property(property).path.clone();
    let entry = AuditEvent::PreferenceCenter {
        subject: app.vault.subject_pseudonym(&found.subject),
        action: "interests_changed".into(),
        actor: None,
    };
    app.store
        .set_profile_value(
            &found.subject,
            &path,
            Value::from(cleaned.clone()).to_string().into_bytes(),
            now,
            vec![entry],
        )
        .await?;
    app.tell(&found.subject, Change::Data).await?;
    Ok(cleaned)
}

/// A policy reason in words for the person.
pub fn reason_in_words(app: &App, reason: Reason) -> String {
    match reason {
        Reason::NoConsent => "you have not switched this on".into(),
        Reason::ConsentWithdrawn => "you switched this off".into(),
        Reason::ConsentExpired => "your yes has expired".into(),
        Reason::ConsentOutdated => "we changed how we describe it, so we need your choice again".into(),
        Reason::NeedsExplicitConsent => "this needs your own explicit yes".into(),
        Reason::Restricted => "you asked us to pause the use of your data".into(),
        Reason::NoPersonalDataInAnalytics => "where you live, we do not use personal data for this".into(),
        Reason::Guardrail(index) => app
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
pub async fn suggestions(app: &App, found: &SubjectState) -> Result<Option<Suggestions>, AppError> {
    let Some(engine) = &app.personalization else { return Ok(None) };
    let refusal = engine.refusal(app, found, app.now());
    let person = if refusal.is_none() { engine.person(&found.subject) } else { None };
    let picked = engine.recommend(person.as_ref(), None, FilterInput::default(), SUGGESTIONS, 0);
    let mut items = Vec::with_capacity(picked.len());
    for pick in picked {
        let name = item_name(app, &pick.item.id).await?;
        let because = match pick.reason.get("item").and_then(Value::as_str) {
            Some(id) => Some((id.to_owned(), item_name(app, id).await?)),
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
        not_personalized_because: refusal.map(|r| reason_in_words(app, r)),
        items,
    }))
}

/// An item's display name (its id when the catalogue has no name for it).
async fn item_name(app: &App, id: &str) -> Result<String, AppError> {
    Ok(app.store.item(id).await?.map_or_else(|| id.to_owned(), |item| item.name))
}
