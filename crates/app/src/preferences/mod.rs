//! The preference center's operations for one signed-in person, shared by the pages (`/me`) and
//! the JSON API (`/v1/me/…`): their choices per purpose, what is known about them and why, the
//! interests they tell, their recommendations with reasons, who accessed their data, and their
//! download and erasure requests. Everything is about the session's own subject: nothing here takes
//! a subject from the request, so no form can reach another person.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Catalog, Regime, normalize_category};
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod, ConsentStates, Status};
use tactful_domain::minimize;
use tactful_domain::policy::{Reason, Rule};
use tactful_domain::request::{RequestKind, RequestStatus, legal_hold_properties};
use tactful_domain::segment::format_time;
use tactful_domain::taxonomy::Taxonomy;
use tactful_store::{RequestRecord, SubjectState};

use crate::error::{AppError, ErrorCode};
use crate::exports::package::downloadable;
use crate::personalize::FilterInput;
use crate::requests::{self, NewRequestInput};
use crate::subjects::context as subject_context;
use crate::{App, Change};

mod access_log;
mod gpc;
mod interests;
mod known;
mod my_requests;
mod sign_in;

pub use access_log::{Access, access_log};
pub use gpc::{Gpc, apply_gpc};
pub use interests::{
    Interests, Suggestion, Suggestions, Topic, interests, reason_in_words, set_interests, suggestions,
};
pub use known::{Known, KnownItem, known};
pub use my_requests::{MyRequest, ask, kept_by, kept_if_erased, my_requests, request_of};
pub use sign_in::{
    SIGN_IN_ATTEMPTS, SIGN_IN_CODE_TTL_MS, SignedIn, finish_sign_in, send_sign_in_codes, start_sign_in,
};

/// Values shown per kind of data before "and N more".
const SHOWN_VALUES: usize = 5;
/// Recommendations shown under "Why am I seeing this".
const SUGGESTIONS: usize = 6;
/// Longest value shown in full.
const SHORT: usize = 80;

/// The person's family state, or the error every `/me` route gives when it is gone (erased).
pub async fn person(app: &App, subject: &str) -> Result<SubjectState, AppError> {
    app.store.subject_state(subject).await?.ok_or_else(|| AppError::new(ErrorCode::SessionExpired))
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
pub fn choices(app: &App, found: &SubjectState, now: i64) -> Vec<Choice> {
    let catalog = &app.catalog;
    let folded = ConsentStates::fold(&found.ledger);
    let context = subject_context(app, found);
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
                        app.policy.rule(context.jurisdiction, context.minor, p.id, index),
                        Rule::Deny(Reason::Guardrail(_) | Reason::NoPersonalDataInAnalytics)
                    )
                });
            let (code, on, explained): (&'static str, bool, String) = if purpose.is_essential() {
                ("always_on", true, "Needed to provide the service. To end it, delete your data.".into())
            } else if blocked {
                let why = serving
                    .iter()
                    .find_map(|p| match app.policy.rule(context.jurisdiction, context.minor, p.id, index) {
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
    app: &App,
    found: &SubjectState,
    changes: &[(String, bool)],
) -> Result<Vec<Value>, AppError> {
    if changes.is_empty() || changes.len() > app.catalog.purposes().len() {
        return Err(AppError::with_message(ErrorCode::InvalidRequest, "choose at least one purpose"));
    }
    let now = app.now();
    let current = choices(app, found, now);
    let folded = ConsentStates::fold(&found.ledger);
    let mut events = Vec::new();
    for (key, on) in changes {
        let choice = current.iter().find(|c| &c.purpose == key).ok_or_else(|| {
            AppError::with_message(ErrorCode::UnknownPurpose, format!("there is no purpose {key:?}"))
        })?;
        if !choice.switchable {
            return Err(AppError::with_message(
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
        let purpose = app.catalog.purpose(key).ok_or_else(|| AppError::new(ErrorCode::UnknownPurpose))?;
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
            // The person's own session.
            verified: true,
            provenance: None,
        });
    }
    if events.is_empty() {
        return Ok(Vec::new());
    }
    crate::consents::record(app, found, events).await
}

/// Records that a link was issued to (or used by) a person.
pub fn audit(app: &App, subject: &str, action: &str, actor: Option<&str>) -> AuditEvent {
    AuditEvent::PreferenceCenter {
        subject: app.vault.subject_pseudonym(subject),
        action: action.to_owned(),
        actor: actor.map(str::to_owned),
    }
}
