//! The catalog (data map): what the brand collects, from which sources, for which purposes, for how
//! long and under which law. Everything the product stores or decides is checked against it.

mod category;
pub mod iab;
mod linking;
mod parse;
mod path;
mod regulations;
mod role;

use std::collections::{HashMap, HashSet};

pub use category::normalize_category;
pub use linking::Linking;
pub use parse::{CatalogErrors, MAX_N, Problem};
pub use path::looks_like_field_name;
pub use regulations::{RegulationApi, Regulations};
pub use role::{Capability, RequestKind, Role};

use crate::identity::IdentifierKind;
use crate::period::Retention;
use crate::secret::Secret;

/// A validated catalog. Build one with [`Catalog::parse`]; it cannot exist in an invalid state.
#[derive(Debug, Clone)]
pub struct Catalog {
    brand: Brand,
    sources: Vec<Source>,
    purposes: Vec<Purpose>,
    properties: Vec<Property>,
    events: Vec<EventSpec>,
    jurisdictions: Vec<Jurisdiction>,
    roles: Vec<Role>,
    subjects: SubjectTraits,
    /// Consent category ids (as consent management platforms send them) and the purposes they mean.
    consent_categories: Vec<(String, Vec<String>)>,
    guardrails: Vec<Guardrail>,
    source_by_write_key: HashMap<String, SourceId>,
    property_by_path: HashMap<String, PropertyId>,
    /// Every proper prefix of a declared path, so the minimizer knows when to descend into an object.
    path_prefixes: HashSet<String>,
    destinations: Vec<Destination>,
    personalization: Option<Personalization>,
    analytics: Option<Analytics>,
    linking: Linking,
    /// How IAB consent strings map onto the purposes (`[iab]`).
    iab: iab::IabMapping,
    /// SHA-256 of the catalog's text (hex), so the audit log shows which data map was in force.
    sha256: String,
    /// What the check changed without refusing anything (a category's spelling normalized).
    notes: Vec<Problem>,
}

/// What a destination can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationMessage {
    Erase,
    Rectify,
    Restrict,
    Unrestrict,
    Object,
    Suppress,
    Unsuppress,
    /// A consent change, from any door (events, the API, the preference center).
    ConsentChanged,
}

impl DestinationMessage {
    pub const ALL: [DestinationMessage; 8] = [
        DestinationMessage::Erase,
        DestinationMessage::Rectify,
        DestinationMessage::Restrict,
        DestinationMessage::Unrestrict,
        DestinationMessage::Object,
        DestinationMessage::Suppress,
        DestinationMessage::Unsuppress,
        DestinationMessage::ConsentChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DestinationMessage::Erase => "erase",
            DestinationMessage::Rectify => "rectify",
            DestinationMessage::Restrict => "restrict",
            DestinationMessage::Unrestrict => "unrestrict",
            DestinationMessage::Object => "object",
            DestinationMessage::Suppress => "suppress",
            DestinationMessage::Unsuppress => "unsuppress",
            DestinationMessage::ConsentChanged => "consent_changed",
        }
    }

    pub fn parse(text: &str) -> Option<DestinationMessage> {
        DestinationMessage::ALL.into_iter().find(|message| message.as_str() == text)
    }
}

/// How a destination is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationKind {
    /// Signed JSON POSTs to the destination's `url` (HMAC-SHA256, `Tactful-Signature`).
    Webhook,
    /// The Segment protocol: `POST {url}/v1/batch` with the endpoint's own write key (Segment,
    /// RudderStack, PostHog, or another Tactful); erasures also go to `regulations` when named.
    Segment { write_key: Secret, regulations: Option<Regulations> },
    /// A PostgreSQL database the brand owns: one table per event kind plus a people table, in
    /// `schema`, holding the destination's tokens instead of identities.
    Warehouse { database_url: Secret, schema: String },
}

/// A downstream system the brand connected: it is told, by signed HTTP requests retried until it
/// acknowledges, about the requests and consent changes it receives, with the identifiers it may know.
#[derive(Debug, Clone)]
pub struct Destination {
    pub key: String,
    pub name: String,
    pub url: String,
    /// Signs every request (HMAC-SHA256 over timestamp and body).
    pub secret: Secret,
    pub receives: Vec<DestinationMessage>,
    /// The identifier kinds it may be told.
    pub identifiers: Vec<IdentifierKind>,
    /// Retrying stops after this long; the request is then partially completed.
    pub give_up_after: Retention,
    /// How it is reached (a webhook unless the catalog says otherwise).
    pub kind: DestinationKind,
    /// What it receives of events; `None` for a destination told only of requests and consent.
    pub forwarding: Option<Forwarding>,
}

impl Destination {
    /// Whether events flow on to it (it declares purposes and events).
    pub fn forwards(&self) -> bool {
        self.forwarding.is_some()
    }
}

/// The events a destination receives, and only for what: the purposes it serves, the events and
/// properties it is sent (each property serving one of those purposes), the sensitive categories
/// it is declared for, and how many events go in one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// Catalog purposes it serves: an event reaches it only if the person permits one of them.
    pub purposes: Vec<String>,
    /// Declared `track` event names, `track` for every one, and call kinds (`identify`, `page`,
    /// `screen`, `group`).
    pub events: Vec<String>,
    /// The properties it receives (each serves one of `purposes`).
    pub properties: Vec<PropertyId>,
    /// Sensitive data categories it is declared for (a sensitive property goes nowhere else).
    pub sensitive: Vec<String>,
    /// Most events in one delivery.
    pub batch_size: u32,
}

impl Forwarding {
    /// Whether an event of this call kind (and, for `track`, name) goes to the destination.
    pub fn receives_event(&self, kind: &str, name: Option<&str>) -> bool {
        self.events
            .iter()
            .any(|listed| listed == kind || (kind == "track" && name.is_some_and(|name| listed == name)))
    }
}

/// Index of a source in its catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub(crate) u16);

/// Index of a property in its catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PropertyId(pub(crate) u16);

impl PropertyId {
    /// Position in [`Catalog::properties`], for tables indexed by property.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Brand {
    pub name: String,
    pub contact: Option<String>,
    pub policy_url: Option<String>,
    /// The controller's postal address, on one line (consent receipts carry it).
    pub address: Option<String>,
    /// The controller's phone number, as people dial it (consent receipts carry it).
    pub phone: Option<String>,
}

/// Where a source's write key lives, which decides what its events can prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// The brand's own servers: the write key is secret, so what its events say is the brand's word.
    Server,
    /// A web page: the write key ships to every visitor, so anyone can send with it.
    Browser,
    /// A mobile app: the write key ships in the app, so anyone can send with it.
    Mobile,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Server => "server",
            SourceKind::Browser => "browser",
            SourceKind::Mobile => "mobile",
        }
    }
}

/// Where events come from: an app or SDK identified by its write key.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: SourceId,
    pub key: String,
    pub name: String,
    pub write_key: Secret,
    pub kind: SourceKind,
    /// For a public source: the secret the brand's backend signs identity tokens with, so events
    /// from a signed-in person's device prove whose they are.
    pub identity_secret: Option<Secret>,
    /// A public source whose userIds and identifying traits count without a token (the brand's
    /// choice, which `catalog check` spells out: anyone holding the write key can then act as
    /// anyone).
    pub trust_claims: bool,
    /// Reject events carrying undeclared properties instead of dropping those properties.
    pub strict: bool,
    /// Origins allowed to send from browsers (CORS). `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The jurisdiction of subjects first seen through this source when no trait says otherwise.
    pub default_jurisdiction: Option<String>,
    /// Whether this source may deliver properties in sensitive categories at all.
    pub allow_sensitive: bool,
}

impl Source {
    /// Whether the write key ships to the public (a browser or an app), so that a userId or an
    /// identifying trait its events carry is only a claim unless an identity token proves it.
    pub fn is_public(&self) -> bool {
        self.kind != SourceKind::Server
    }

    /// Whether an event of this source proves that it belongs to `user_id`: always for a server
    /// source or one that trusts claims; otherwise only with the identity token of `user_id`.
    pub fn proves(&self, user_id: &str, token: Option<&str>) -> bool {
        if !self.is_public() || self.trust_claims {
            return true;
        }
        match (&self.identity_secret, token) {
            (Some(secret), Some(token)) => crate::identity::token_valid(secret.expose(), user_id, token),
            _ => false,
        }
    }
}

/// A purpose: a fideslang data use, explained in plain words.
#[derive(Debug, Clone)]
pub struct Purpose {
    pub key: String,
    pub name: String,
    pub description: String,
    pub benefit: String,
    /// Bumped when the wording changes materially; consent given to an older version may lapse.
    pub version: u32,
}

impl Purpose {
    /// Essential purposes (under `essential.`) are needed to provide the service itself.
    pub fn is_essential(&self) -> bool {
        crate::taxonomy::covers("essential", &self.key)
    }
}

/// A declared property: a path in incoming events that may be stored.
#[derive(Debug, Clone)]
pub struct Property {
    pub id: PropertyId,
    /// Dotted path from the message root, e.g. `traits.email`, `properties.products[].product_id`.
    pub path: String,
    /// fideslang data-category key.
    pub category: String,
    /// Keys of the catalog purposes this property may serve.
    pub purposes: Vec<String>,
    pub retention: Retention,
    pub sensitive: bool,
    /// When set, the value also identifies the subject (looked up through a blind index).
    pub identifier: Option<IdentifierKind>,
    pub description: Option<String>,
}

/// What analysts may ask: aggregates for one purpose, over declared datasets.
#[derive(Debug, Clone)]
pub struct Analytics {
    /// The purpose aggregates serve (an `analytics.*` data use): only people who permit it count.
    pub purpose: String,
    /// The default fewest distinct people per shown group.
    pub k: u32,
    pub datasets: Vec<Dataset>,
}

impl Analytics {
    pub fn dataset(&self, key: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.key == key)
    }
}

/// A dataset analysts may query.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub key: String,
    pub description: Option<String>,
    /// Fewest distinct people per shown group.
    pub k: u32,
    /// The privacy budget per period (ε); without it, answers are exact but thresholded.
    pub epsilon: Option<f64>,
    pub period: Retention,
    /// Rows one person contributes to a noisy answer at most.
    pub rows_per_person: u32,
    pub dimensions: Vec<Dimension>,
    pub measures: Vec<Measure>,
    /// How a pseudonymized export coarsens these properties (quasi-identifiers).
    pub generalize: Vec<(PropertyId, Generalize)>,
}

/// How an export coarsens a value that could help single someone out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generalize {
    /// Keep the first N characters (postcodes, IP prefixes).
    Prefix(usize),
    /// Round numbers to a multiple of N.
    Round(f64),
    /// Keep `YYYY-MM` of a date or time.
    Month,
    /// Keep `YYYY` of a date or time.
    Year,
}

impl Generalize {
    pub fn parse(text: &str) -> Option<Generalize> {
        match text.split_once(':') {
            Some(("prefix", n)) => n.parse().ok().filter(|n| *n > 0).map(Generalize::Prefix),
            Some(("round", n)) => {
                n.parse().ok().filter(|n: &f64| n.is_finite() && *n > 0.0).map(Generalize::Round)
            }
            None if text == "month" => Some(Generalize::Month),
            None if text == "year" => Some(Generalize::Year),
            _ => None,
        }
    }

    /// The coarsened value, or `None` when it has no such shape (left out of the export).
    pub fn apply(self, value: &serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match (self, value) {
            (Generalize::Prefix(n), Value::String(text)) => {
                Some(Value::String(text.chars().take(n).collect()))
            }
            (Generalize::Round(step), Value::Number(number)) => {
                let rounded = (number.as_f64()? / step).round() * step;
                serde_json::Number::from_f64(rounded).map(Value::Number)
            }
            (Generalize::Month, Value::String(text)) if text.len() >= 7 && text.is_char_boundary(7) => {
                Some(Value::String(text[..7].to_owned()))
            }
            (Generalize::Year, Value::String(text)) if text.len() >= 4 && text.is_char_boundary(4) => {
                Some(Value::String(text[..4].to_owned()))
            }
            _ => None,
        }
    }
}

/// What a dataset may be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// The event's name (`track`) or type (others).
    Event,
    /// The source it came through.
    Source,
    /// The UTC day, as `YYYY-MM-DD`.
    Day,
    /// The ISO week, as `YYYY-Www`.
    Week,
    /// The person's lifecycle stage at query time (`new`, `active`, `at_risk`, `lapsed`), from the
    /// first and last times of all their events and the thresholds of `[personalization.lifecycle]`.
    Lifecycle,
    /// A declared, non-sensitive property serving the analytics purpose.
    Property(PropertyId),
}

impl Dimension {
    pub const BUILTIN: [&'static str; 5] = ["event", "source", "day", "week", "lifecycle"];

    pub fn builtin(name: &str) -> Option<Dimension> {
        match name {
            "event" => Some(Dimension::Event),
            "source" => Some(Dimension::Source),
            "day" => Some(Dimension::Day),
            "week" => Some(Dimension::Week),
            "lifecycle" => Some(Dimension::Lifecycle),
            _ => None,
        }
    }
}

/// A numeric property that may be summed or averaged, each value clamped to `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    pub property: PropertyId,
    pub min: f64,
    pub max: f64,
}

/// Lifecycle stages, from nothing known to lapsed (what message rules may name).
pub const LIFECYCLE_STAGES: [&str; 5] = ["unknown", "new", "active", "at_risk", "lapsed"];

/// How recommendations learn, how private their releases are, and what the brand shows and sends.
#[derive(Debug, Clone)]
pub struct Personalization {
    /// The purpose recommendations learn and serve under (a `personalize.*` data use).
    pub purpose: String,
    /// Where people's declared interests (categories they like) are kept.
    pub interests: Option<PropertyId>,
    /// Item categories that are sensitive whatever an item's own flag says.
    pub sensitive_categories: Vec<String>,
    /// Distinct people an item pair (or a popular item) needs before it is used (k).
    pub min_support: u32,
    /// Items one person lends the shared model at most.
    pub cap: u32,
    /// Neighbours kept per item.
    pub neighbors: u32,
    /// Differential privacy on released counts: ε spent per release.
    pub epsilon: Option<f64>,
    /// With ε, `mechanism = "gaussian"`: its δ (Gaussian noise over every catalogue pair); none: the noisy threshold.
    pub gaussian_delta: Option<f64>,
    /// How often a noisy release is made (each spends ε).
    pub release_minutes: u32,
    pub popular_days: u32,
    pub trending_days: u32,
    pub half_life_days: u32,
    pub lifecycle: Lifecycle,
    pub placements: Vec<Placement>,
    pub channels: Vec<Channel>,
    /// Message rules, first match wins.
    pub messages: Vec<MessageRule>,
}

impl Personalization {
    pub fn placement(&self, key: &str) -> Option<&Placement> {
        self.placements.iter().find(|p| p.key == key)
    }

    pub fn channel(&self, key: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.key == key)
    }
}

/// Lifecycle thresholds, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub new_days: u32,
    pub at_risk_days: u32,
    pub lapsed_days: u32,
}

/// Where recommendations are shown: its page size and filters.
#[derive(Debug, Clone)]
pub struct Placement {
    pub key: String,
    pub description: Option<String>,
    pub n: u32,
    pub categories: Vec<String>,
    /// Needs the item being looked at (`item=`).
    pub context: bool,
}

/// A way to reach people, the purpose it serves and the property holding the address.
#[derive(Debug, Clone)]
pub struct Channel {
    pub key: String,
    pub purpose: String,
    pub address: PropertyId,
}

/// A next-best-message rule: for people at these stages (and, if listed, with one of these
/// interests), this message on this channel.
#[derive(Debug, Clone)]
pub struct MessageRule {
    pub key: String,
    pub channel: String,
    pub stages: Vec<String>,
    pub interests: Vec<String>,
    pub title: String,
    pub body: String,
}

/// What an event means to personalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    View,
    AddToCart,
    Purchase,
}

/// A declared `track` event name (the brand's tracking plan).
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub name: String,
    pub description: Option<String>,
    pub feedback: Option<Feedback>,
    /// The property holding the item (product) id, for personalization.
    pub item: Option<PropertyId>,
}

/// How a jurisdiction's law treats non-essential purposes by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// GDPR-style: denied until the person gives consent.
    OptIn,
    /// CCPA/CPRA-style: allowed until the person opts out.
    OptOut,
}

#[derive(Debug, Clone)]
pub struct Jurisdiction {
    pub key: String,
    pub name: String,
    pub regime: Regime,
    /// Days the brand has to answer a data-subject request.
    pub request_deadline_days: u32,
    /// Days a deadline may be extended by, once, with a reason.
    pub request_extension_days: u32,
    /// Country codes (`DE`) and regions (`US-CA`) whose people fall under this jurisdiction.
    pub countries: Vec<String>,
    /// Marketing by email or SMS needs its own explicit consent, whatever the regime.
    pub channel_consent: bool,
    /// Analytics purposes may not use personal data (categories under `user.`).
    pub no_personal_data_in_analytics: bool,
}

/// Where in incoming events a subject's attributes come from.
#[derive(Debug, Clone, Default)]
pub struct SubjectTraits {
    /// Path of a country code (`DE`), which picks the subject's jurisdiction.
    pub country: Option<String>,
    /// Path of a region within the country (`CA`), making `US-CA`.
    pub region: Option<String>,
    /// Path of a date of birth (`YYYY-MM-DD`), which tells minors apart.
    pub birthday: Option<String>,
    /// Below this age a subject is a minor.
    pub adult_age: u32,
}

/// A brand-written rule beyond the regimes: never use these categories for these purposes, for
/// subjects of these jurisdictions (empty: all) and, if set, only for minors or adults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrail {
    pub name: String,
    pub description: Option<String>,
    /// Data categories it protects (empty: every category).
    pub categories: Vec<String>,
    /// Purposes it forbids them for (empty: every purpose).
    pub purposes: Vec<String>,
    pub jurisdictions: Vec<String>,
    pub minors: Option<bool>,
}

impl Guardrail {
    pub fn applies_to_category(&self, category: &str) -> bool {
        self.categories.is_empty()
            || self.categories.iter().any(|protected| crate::taxonomy::covers(protected, category))
    }

    pub fn applies_to_purpose(&self, purpose: &str) -> bool {
        self.purposes.is_empty()
            || self.purposes.iter().any(|forbidden| crate::taxonomy::covers(forbidden, purpose))
    }

    pub fn applies_to_subject(&self, jurisdiction: Option<&str>, minor: bool) -> bool {
        let in_jurisdiction = self.jurisdictions.is_empty()
            || jurisdiction.is_some_and(|key| self.jurisdictions.iter().any(|listed| listed == key));
        in_jurisdiction && self.minors.is_none_or(|minors| minors == minor)
    }
}

impl Catalog {
    /// Parses and validates a catalog, reporting every problem found with its position.
    pub fn parse(text: &str) -> Result<Catalog, CatalogErrors> {
        parse::parse(text)
    }

    /// The merge rules: which identifiers link people, from where, and how many one person holds.
    pub fn linking(&self) -> &Linking {
        &self.linking
    }

    /// Analytics settings, when the catalog declares `[analytics]`.
    pub fn analytics(&self) -> Option<&Analytics> {
        self.analytics.as_ref()
    }

    /// A dimension's name as queries and answers use it.
    pub fn dimension_name(&self, dimension: Dimension) -> &str {
        match dimension {
            Dimension::Event => "event",
            Dimension::Source => "source",
            Dimension::Day => "day",
            Dimension::Week => "week",
            Dimension::Lifecycle => "lifecycle",
            Dimension::Property(property) => &self.property(property).path,
        }
    }

    /// Personalization settings; `None` when the catalog declares no personalization purpose.
    pub fn personalization(&self) -> Option<&Personalization> {
        self.personalization.as_ref()
    }

    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    pub fn destination(&self, key: &str) -> Option<&Destination> {
        self.destinations.iter().find(|destination| destination.key == key)
    }

    /// SHA-256 of the text the catalog was parsed from, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Notes from the check: what it read differently from how it is written (a category matched
    /// in its normalized spelling), worth a look but never a reason to refuse the catalog.
    pub fn notes(&self) -> &[Problem] {
        &self.notes
    }

    pub fn brand(&self) -> &Brand {
        &self.brand
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    pub fn source(&self, id: SourceId) -> &Source {
        &self.sources[usize::from(id.0)]
    }

    pub fn source_by_key(&self, key: &str) -> Option<&Source> {
        self.sources.iter().find(|source| source.key == key)
    }

    /// The source a write key belongs to. Comparison goes through a hash map, so its timing does
    /// not depend on how much of a guessed key is right.
    pub fn source_by_write_key(&self, write_key: &str) -> Option<&Source> {
        self.source_by_write_key.get(write_key).map(|&id| self.source(id))
    }

    pub fn purposes(&self) -> &[Purpose] {
        &self.purposes
    }

    pub fn purpose(&self, key: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|purpose| purpose.key == key)
    }

    pub fn properties(&self) -> &[Property] {
        &self.properties
    }

    pub fn property(&self, id: PropertyId) -> &Property {
        &self.properties[usize::from(id.0)]
    }

    pub fn property_by_path(&self, path: &str) -> Option<&Property> {
        self.property_by_path.get(path).map(|&id| self.property(id))
    }

    /// Whether some declared path lies strictly below `path` (so an object there must be walked).
    pub fn has_properties_below(&self, path: &str) -> bool {
        self.path_prefixes.contains(path)
    }

    pub fn events(&self) -> &[EventSpec] {
        &self.events
    }

    pub fn event(&self, name: &str) -> Option<&EventSpec> {
        self.events.iter().find(|event| event.name == name)
    }

    pub fn jurisdictions(&self) -> &[Jurisdiction] {
        &self.jurisdictions
    }

    pub fn jurisdiction(&self, key: &str) -> Option<&Jurisdiction> {
        self.jurisdictions.iter().find(|jurisdiction| jurisdiction.key == key)
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|role| role.name == name)
    }

    pub fn subject_traits(&self) -> &SubjectTraits {
        &self.subjects
    }

    /// The jurisdiction of people in `country` (and `region` within it), if one is declared.
    pub fn jurisdiction_for_location(&self, country: &str, region: Option<&str>) -> Option<&Jurisdiction> {
        let country = country.trim().to_ascii_uppercase();
        let region = region.map(|region| format!("{country}-{}", region.trim().to_ascii_uppercase()));
        let listed = |code: &str| self.jurisdictions.iter().find(|j| j.countries.iter().any(|c| c == code));
        region.as_deref().and_then(listed).or_else(|| listed(&country))
    }

    /// What a kept record says of its subject: the jurisdiction its country (and region) picks,
    /// and whether the subject is a minor on `at` (Unix milliseconds), from the declared traits.
    pub fn observed_attributes(
        &self,
        record: &serde_json::Map<String, serde_json::Value>,
        at: i64,
    ) -> (Option<String>, Option<bool>) {
        let text = |path: &Option<String>| -> Option<String> {
            let mut segments = path.as_deref()?.split('.');
            let mut value = record.get(segments.next()?)?;
            for segment in segments {
                value = value.get(segment)?;
            }
            value.as_str().map(|text| text.trim().to_owned()).filter(|text| !text.is_empty())
        };
        let traits = &self.subjects;
        let jurisdiction = text(&traits.country).and_then(|country| {
            let region = text(&traits.region);
            self.jurisdiction_for_location(&country, region.as_deref())
                .map(|jurisdiction| jurisdiction.key.clone())
        });
        let minor = text(&traits.birthday).and_then(|birthday| {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let born = time::Date::parse(birthday.get(..10)?, &format).ok()?;
            let today = time::OffsetDateTime::from_unix_timestamp(at.div_euclid(1000)).ok()?.date();
            let mut age = today.year() - born.year();
            if (today.month() as u8, today.day()) < (born.month() as u8, born.day()) {
                age -= 1;
            }
            Some(age < i32::try_from(traits.adult_age).unwrap_or(18))
        });
        (jurisdiction, minor)
    }

    pub fn consent_categories(&self) -> &[(String, Vec<String>)] {
        &self.consent_categories
    }

    /// The purposes a consent category id stands for.
    pub fn consent_category(&self, id: &str) -> Option<&[String]> {
        self.consent_categories.iter().find(|(known, _)| known == id).map(|(_, purposes)| purposes.as_slice())
    }

    /// How IAB consent strings (TCF, GPP) map onto the purposes.
    pub fn iab(&self) -> &iab::IabMapping {
        &self.iab
    }

    pub fn guardrails(&self) -> &[Guardrail] {
        &self.guardrails
    }

    /// Position of a declared purpose, for tables indexed by purpose.
    pub fn purpose_index(&self, key: &str) -> Option<usize> {
        self.purposes.iter().position(|purpose| purpose.key == key)
    }

    pub fn jurisdiction_index(&self, key: &str) -> Option<usize> {
        self.jurisdictions.iter().position(|jurisdiction| jurisdiction.key == key)
    }

    /// The annotated example catalog of a web shop that ships with Tactful and drives the demo.
    pub fn example_text() -> &'static str {
        include_str!("../../../../examples/tactful.toml")
    }
}

#[cfg(test)]
mod tests;
