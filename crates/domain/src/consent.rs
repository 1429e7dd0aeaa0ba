//! The consent ledger as data: append-only consent events per subject and purpose, the current state
//! derived by folding them, and the consent signals that arrive on events (Segment's
//! `context.consent`, RudderStack's `context.consentManagement`, the Global Privacy Control, IAB
//! TCF and GPP strings).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::Catalog;

/// What happened to a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentKind {
    Given,
    Withdrawn,
    /// Its expiry passed (recorded so the ledger tells the whole story).
    Expired,
    /// Given again, typically with a new expiry.
    Renewed,
}

impl ConsentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentKind::Given => "given",
            ConsentKind::Withdrawn => "withdrawn",
            ConsentKind::Expired => "expired",
            ConsentKind::Renewed => "renewed",
        }
    }

    pub fn parse(text: &str) -> Option<ConsentKind> {
        Some(match text {
            "given" => ConsentKind::Given,
            "withdrawn" => ConsentKind::Withdrawn,
            "expired" => ConsentKind::Expired,
            "renewed" => ConsentKind::Renewed,
            _ => return None,
        })
    }
}

/// How a consent was collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    /// The person acted on a consent banner or form (including a CMP's signal on an event).
    Explicit,
    /// The person switched it in Tactful's preference center.
    PreferenceCenter,
    /// The brand recorded what the person told it, through the API.
    Api,
    /// Brought over from a previous system; counts as given, not as explicit.
    Imported,
    /// The default of an opt-out regime, recorded for the record.
    OptOutDefault,
    /// The browser's Global Privacy Control signal (`Sec-GPC: 1`): an opt-out of sale and sharing.
    Gpc,
}

impl ConsentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentMethod::Explicit => "explicit",
            ConsentMethod::PreferenceCenter => "preference_center",
            ConsentMethod::Api => "api",
            ConsentMethod::Imported => "imported",
            ConsentMethod::OptOutDefault => "opt_out_default",
            ConsentMethod::Gpc => "gpc",
        }
    }

    pub fn parse(text: &str) -> Option<ConsentMethod> {
        Some(match text {
            "explicit" => ConsentMethod::Explicit,
            "preference_center" => ConsentMethod::PreferenceCenter,
            "api" => ConsentMethod::Api,
            "imported" => ConsentMethod::Imported,
            "opt_out_default" => ConsentMethod::OptOutDefault,
            "gpc" => ConsentMethod::Gpc,
            _ => return None,
        })
    }

    /// Whether the person themselves expressed it (what sensitive data and channel consent need).
    pub fn is_explicit(self) -> bool {
        matches!(self, ConsentMethod::Explicit | ConsentMethod::PreferenceCenter | ConsentMethod::Api)
    }
}

/// One entry of the consent ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    /// Random; also breaks ties between events at the same millisecond.
    pub id: String,
    pub purpose: String,
    pub kind: ConsentKind,
    pub method: ConsentMethod,
    /// Unix milliseconds.
    pub at: i64,
    pub expires_at: Option<i64>,
    /// The version of the purpose's wording the person saw.
    pub version: u32,
    /// Where it came from: a source key, `api`, `preference_center`.
    pub source: Option<String>,
    pub jurisdiction: Option<String>,
    /// Whether who it is about was proven: by the brand's secret key or API key, the person's own
    /// session, or an identity token. A signal from a public write key without one is a claim: it
    /// applies to that device only and a grant never counts as explicit.
    #[serde(default = "proven")]
    pub verified: bool,
    /// The consent string it was read from (IAB TCF or GPP), if it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<StringProvenance>,
}

/// Where a ledger entry read from a consent string came from: the string's SHA-256 (never the
/// string itself), the CMP that wrote it and the times it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StringProvenance {
    /// `tcf` (a TC string) or `gpp`.
    pub format: String,
    /// SHA-256 of the whole string as received, lowercase hex.
    pub sha256: String,
    pub cmp_id: Option<u16>,
    pub cmp_version: Option<u16>,
    /// The TC string's `Created` and `LastUpdated` (Unix milliseconds); absent for GPP's US sections.
    pub created: Option<i64>,
    pub updated: Option<i64>,
}

fn proven() -> bool {
    true
}

/// The latest event of one purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub kind: ConsentKind,
    pub method: ConsentMethod,
    pub at: i64,
    pub expires_at: Option<i64>,
    pub version: u32,
    /// Whether who it is about was proven (see [`ConsentEvent::verified`]).
    pub verified: bool,
    id: String,
}

/// What a purpose's consent amounts to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    NoSignal,
    Given {
        /// Expressed by the person (not imported, not a default).
        explicit: bool,
        /// Given to the purpose's current wording.
        current: bool,
    },
    Withdrawn,
    Expired,
}

/// Current consent per purpose, folded from the ledger. The last event wins, ordered by time and
/// then id, so the fold is commutative and associative: folding the ledger in any order, in any
/// chunks, or merging folds of parts, gives the same state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentStates {
    by_purpose: BTreeMap<String, ConsentRecord>,
}

impl ConsentRecord {
    /// The id of the ledger entry (and of its receipt).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl ConsentStates {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a ConsentEvent>) -> ConsentStates {
        let mut states = ConsentStates::default();
        for event in events {
            states.apply(event);
        }
        states
    }

    pub fn apply(&mut self, event: &ConsentEvent) {
        let record = ConsentRecord {
            kind: event.kind,
            method: event.method,
            at: event.at,
            expires_at: event.expires_at,
            version: event.version,
            verified: event.verified,
            id: event.id.clone(),
        };
        self.put(&event.purpose, record);
    }

    fn put(&mut self, purpose: &str, record: ConsentRecord) {
        match self.by_purpose.get(purpose) {
            Some(existing) if (existing.at, &existing.id) >= (record.at, &record.id) => {}
            _ => {
                self.by_purpose.insert(purpose.to_owned(), record);
            }
        }
    }

    /// Combines two folds (for example of two subjects that turned out to be one person).
    pub fn merge(&mut self, other: &ConsentStates) {
        for (purpose, record) in &other.by_purpose {
            self.put(purpose, record.clone());
        }
    }

    pub fn get(&self, purpose: &str) -> Option<&ConsentRecord> {
        self.by_purpose.get(purpose)
    }

    pub fn purposes(&self) -> impl Iterator<Item = (&str, &ConsentRecord)> {
        self.by_purpose.iter().map(|(purpose, record)| (purpose.as_str(), record))
    }

    /// What the consent to `purpose` amounts to at `now`, against the purpose's current version.
    pub fn status(&self, purpose: &str, current_version: u32, now: i64) -> Status {
        match self.by_purpose.get(purpose) {
            None => Status::NoSignal,
            Some(record) => match record.kind {
                ConsentKind::Withdrawn => Status::Withdrawn,
                ConsentKind::Expired => Status::Expired,
                ConsentKind::Given | ConsentKind::Renewed
                    if record.expires_at.is_some_and(|end| end <= now) =>
                {
                    Status::Expired
                }
                ConsentKind::Given | ConsentKind::Renewed => Status::Given {
                    explicit: record.verified && record.method.is_explicit(),
                    current: record.version >= current_version,
                },
            },
        }
    }

    /// When `signal`, received at `received`, takes effect in the ledger; `None` when it is older
    /// than the latest word on its purpose (an offline queue, a late retry, a consent string last
    /// updated before the person's newer choice), which it must not undo. A string's own time is
    /// its `LastUpdated`, which CMPs round to the day: a string of the same day as the latest word
    /// comes after it (by a millisecond), so the last string seen on a day is the one that holds.
    pub fn signal_time(&self, signal: &ConsentSignal, received: i64) -> Option<i64> {
        let at = signal.at.map_or(received, |at| at.min(received));
        match self.by_purpose.get(&signal.purpose) {
            Some(latest) if latest.at > at => None,
            Some(latest) if latest.at == at && signal.at.is_some() => Some(at + 1),
            _ => Some(at),
        }
    }

    /// Whether recording `signal` would change anything: signals repeat on every event a browser
    /// sends, and only changes belong in the ledger. A GPC opt-out does not override consent the
    /// person gave explicitly (that conflict is theirs to resolve, in the preference center).
    pub fn changes(&self, signal: &ConsentSignal, current_version: u32, now: i64) -> bool {
        let status = self.status(&signal.purpose, current_version, now);
        match signal.kind {
            ConsentKind::Withdrawn if signal.method == ConsentMethod::Gpc => {
                !matches!(status, Status::Withdrawn | Status::Given { explicit: true, .. })
            }
            ConsentKind::Withdrawn => status != Status::Withdrawn,
            ConsentKind::Given | ConsentKind::Renewed => {
                !matches!(status, Status::Given { current: true, .. })
            }
            ConsentKind::Expired => matches!(status, Status::Given { .. }),
        }
    }
}

/// The signals of an event whose person is not proven (a claim from a public write key) that may
/// still be recorded for the subject it reached: on an anonymous device, all of them (they stay
/// that device's, and a grant never counts as explicit); on a known person's family, only what
/// narrows (withdrawals, GPC) — a claim never grants anything for a known person.
pub fn claimed(signals: &[ConsentSignal], reached_known_person: bool) -> Vec<ConsentSignal> {
    signals
        .iter()
        .filter(|signal| {
            !reached_known_person || !matches!(signal.kind, ConsentKind::Given | ConsentKind::Renewed)
        })
        .cloned()
        .collect()
}

/// A consent change carried by an event or a request, before it becomes a ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentSignal {
    pub purpose: String,
    pub kind: ConsentKind,
    pub method: ConsentMethod,
    /// When the person said it, where the signal carries its own time (a TC string's
    /// `LastUpdated`); otherwise the event's time.
    pub at: Option<i64>,
    pub provenance: Option<StringProvenance>,
}

/// A consent object on an event that cannot be read; the event is refused rather than guessed at,
/// since a garbled "no" must not turn into a "yes".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedConsent(pub String);

/// The consent signals of an event's `context`: Segment's `consent.categoryPreferences` and
/// RudderStack's `consentManagement`, through the catalog's consent categories, and the IAB
/// strings in `consent.tcString` and `consent.gppString` (see [`strings`]). No object means no
/// signal; an empty `categoryPreferences` means every category is denied. Where categories or
/// strings disagree about a purpose, denial wins; a malformed string refuses the event.
pub fn signals_from_context(
    catalog: &Catalog,
    context: Option<&Value>,
) -> Result<Vec<ConsentSignal>, MalformedConsent> {
    let Some(Value::Object(context)) = context else { return Ok(Vec::new()) };
    let mut decided: BTreeMap<String, bool> = BTreeMap::new();
    let mut decide = |category: &str, granted: bool| {
        for purpose in catalog.consent_category(category).unwrap_or(&[]) {
            let entry = decided.entry(purpose.clone()).or_insert(granted);
            *entry = *entry && granted;
        }
    };
    match context.get("consent") {
        None | Some(Value::Null) => {}
        Some(Value::Object(consent)) => match consent.get("categoryPreferences") {
            None | Some(Value::Null) => {}
            Some(Value::Object(preferences)) if preferences.is_empty() => {
                for (category, _) in catalog.consent_categories() {
                    decide(category, false);
                }
            }
            Some(Value::Object(preferences)) => {
                for (category, granted) in preferences {
                    let Value::Bool(granted) = granted else {
                        return Err(MalformedConsent(format!(
                            "context.consent.categoryPreferences.{category} must be true or false"
                        )));
                    };
                    decide(category, *granted);
                }
            }
            Some(_) => {
                return Err(MalformedConsent("context.consent.categoryPreferences must be an object".into()));
            }
        },
        Some(_) => return Err(MalformedConsent("context.consent must be an object".into())),
    }
    match context.get("consentManagement") {
        None | Some(Value::Null) => {}
        Some(Value::Object(management)) => {
            for (field, granted) in [("allowedConsentIds", true), ("deniedConsentIds", false)] {
                match management.get(field) {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(ids)) => {
                        for id in ids {
                            let Value::String(id) = id else {
                                return Err(MalformedConsent(format!(
                                    "context.consentManagement.{field} must hold strings"
                                )));
                            };
                            decide(id, granted);
                        }
                    }
                    Some(_) => {
                        return Err(MalformedConsent(format!(
                            "context.consentManagement.{field} must be an array"
                        )));
                    }
                }
            }
        }
        Some(_) => return Err(MalformedConsent("context.consentManagement must be an object".into())),
    }
    let mut signals: Vec<ConsentSignal> = decided
        .into_iter()
        .map(|(purpose, granted)| ConsentSignal {
            purpose,
            kind: if granted { ConsentKind::Given } else { ConsentKind::Withdrawn },
            method: ConsentMethod::Explicit,
            at: None,
            provenance: None,
        })
        .collect();
    if let Some(Value::Object(consent)) = context.get("consent") {
        signals.extend(strings::signals(catalog, &strings_of(consent)?)?);
        signals = strings::denial_wins(signals);
    }
    Ok(signals)
}

/// The IAB consent strings of an event's `context.consent`: `tcString`, `gppString` and
/// `gppSid`. Absent or null means none; anything but text is refused.
fn strings_of(consent: &serde_json::Map<String, Value>) -> Result<strings::Strings<'_>, MalformedConsent> {
    let text = |field: &'static str| match consent.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(MalformedConsent(format!("context.consent.{field} must be a string"))),
    };
    let gpp_sid = match consent.get("gppSid") {
        None | Some(Value::Null) => None,
        Some(value) => Some(strings::parse_sid(value, "context.consent.gppSid")?),
    };
    Ok(strings::Strings {
        tc: text("tcString")?.map(|text| ("context.consent.tcString", text)),
        gpp: text("gppString")?.map(|text| ("context.consent.gppString", text)),
        gpp_sid,
    })
}

/// Purposes that amount to selling or sharing personal data, or targeting ads with it: what the
/// Global Privacy Control opts out of (CCPA/CPRA, 11 CCR §7025; Colorado).
const SALE_AND_SHARING: &[&str] = &["third_party_sharing", "marketing.advertising.third_party", "sales"];

/// Whether a purpose is sale, sharing or targeted advertising.
pub fn is_sale_or_sharing(purpose: &str) -> bool {
    SALE_AND_SHARING.iter().any(|root| crate::taxonomy::covers(root, purpose))
}

/// The withdrawals a `Sec-GPC: 1` header means: every declared sale-or-sharing purpose.
pub fn gpc_signals(catalog: &Catalog) -> Vec<ConsentSignal> {
    catalog
        .purposes()
        .iter()
        .filter(|purpose| is_sale_or_sharing(&purpose.key))
        .map(|purpose| ConsentSignal {
            purpose: purpose.key.clone(),
            kind: ConsentKind::Withdrawn,
            method: ConsentMethod::Gpc,
            at: None,
            provenance: None,
        })
        .collect()
}

pub mod strings;

#[cfg(test)]
mod tests;
