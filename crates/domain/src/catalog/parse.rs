//! Reading a catalog from TOML: syntax and shape first (serde, with spans), then every semantic
//! rule, collecting all problems with their line and column so one run of `tactful catalog check`
//! shows everything to fix.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{
    Brand, Catalog, Destination, DestinationMessage, EventSpec, Feedback, Guardrail, Jurisdiction, Property,
    PropertyId, Purpose, Regime, Role, Source, SourceId, SubjectTraits,
};
use crate::identity::IdentifierKind;
use crate::period::Retention;
use crate::secret::Secret;
use crate::taxonomy::{self, Taxonomy};

mod analytics;
mod personalization;
pub use personalization::MAX_N;

/// One problem in a catalog, at a position in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    pub message: String,
}

/// Every problem found in a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogErrors {
    pub problems: Vec<Problem>,
}

impl CatalogErrors {
    /// One line per problem, prefixed with `file:line:column`, the way compilers print them.
    pub fn render(&self, file: &str) -> String {
        self.problems
            .iter()
            .map(|problem| match problem.line {
                0 => format!("{file}: {}", problem.message),
                line => format!("{file}:{line}:{}: {}", problem.column, problem.message),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for CatalogErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("catalog"))
    }
}

impl std::error::Error for CatalogErrors {}

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    brand: RawBrand,
    #[serde(default)]
    sources: BTreeMap<S<String>, RawSource>,
    #[serde(default)]
    jurisdictions: BTreeMap<S<String>, RawJurisdiction>,
    #[serde(default)]
    purposes: BTreeMap<S<String>, RawPurpose>,
    #[serde(default)]
    properties: BTreeMap<S<String>, RawProperty>,
    #[serde(default)]
    events: BTreeMap<S<String>, RawEvent>,
    #[serde(default)]
    roles: BTreeMap<S<String>, RawRole>,
    #[serde(default)]
    subjects: Option<RawSubjects>,
    #[serde(default)]
    consent_categories: BTreeMap<S<String>, Vec<S<String>>>,
    #[serde(default)]
    guardrails: Vec<RawGuardrail>,
    #[serde(default)]
    destinations: BTreeMap<S<String>, RawDestination>,
    personalization: Option<personalization::RawPersonalization>,
    analytics: Option<analytics::RawAnalytics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    name: Option<String>,
    url: S<String>,
    secret: S<String>,
    receives: Vec<S<String>>,
    #[serde(default)]
    identifiers: Vec<S<String>>,
    give_up_after: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubjects {
    country_trait: Option<S<String>>,
    region_trait: Option<S<String>>,
    birthday_trait: Option<S<String>>,
    adult_age: Option<S<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuardrail {
    name: S<String>,
    description: Option<String>,
    #[serde(default)]
    categories: Vec<S<String>>,
    #[serde(default)]
    purposes: Vec<S<String>>,
    #[serde(default)]
    jurisdictions: Vec<S<String>>,
    minors: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBrand {
    name: S<String>,
    contact: Option<String>,
    policy_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Option<String>,
    write_key: S<String>,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    allowed_origins: Vec<S<String>>,
    default_jurisdiction: Option<S<String>>,
    #[serde(default)]
    allow_sensitive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJurisdiction {
    name: S<String>,
    regime: Regime,
    request_deadline_days: Option<S<u32>>,
    request_extension_days: Option<S<u32>>,
    #[serde(default)]
    countries: Vec<S<String>>,
    channel_consent: Option<bool>,
    #[serde(default)]
    no_personal_data_in_analytics: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    name: S<String>,
    description: S<String>,
    benefit: S<String>,
    version: Option<S<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperty {
    category: S<String>,
    purposes: S<Vec<S<String>>>,
    retention: S<String>,
    #[serde(default)]
    sensitive: bool,
    identifier: Option<S<String>>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    description: Option<String>,
    feedback: Option<Feedback>,
    item: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    description: Option<String>,
    #[serde(default)]
    purposes: Vec<S<String>>,
    #[serde(default)]
    categories: Vec<S<String>>,
}

/// Collects problems while the catalog is checked.
struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_column(self.text, span.start);
        self.problems.push(Problem { line, column, message: message.into() });
    }

    fn non_empty(&mut self, value: &S<String>, what: &str) -> String {
        if value.get_ref().trim().is_empty() {
            self.at(value.span(), format!("{what} must not be empty"));
        }
        value.get_ref().clone()
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    (line, column)
}

/// Table entries in the order they appear in the file, so problems and ids follow the text.
fn in_file_order<T>(table: BTreeMap<S<String>, T>) -> Vec<(S<String>, T)> {
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

pub(super) fn parse(text: &str) -> Result<Catalog, CatalogErrors> {
    let raw: RawCatalog = toml::from_str(text).map_err(|error| {
        let (line, column) = error.span().map_or((0, 0), |span| line_column(text, span.start));
        CatalogErrors { problems: vec![Problem { line, column, message: error.message().trim().to_owned() }] }
    })?;
    let mut checker = Checker { text, problems: Vec::new() };
    let mut catalog = check(raw, &mut checker);
    if checker.problems.is_empty() {
        use sha2::Digest as _;
        catalog.sha256 = crate::encoding::hex(&sha2::Sha256::digest(text.as_bytes()));
        Ok(catalog)
    } else {
        checker.problems.sort_by_key(|problem| (problem.line, problem.column));
        Err(CatalogErrors { problems: checker.problems })
    }
}

fn check(raw: RawCatalog, checker: &mut Checker<'_>) -> Catalog {
    let taxonomy = Taxonomy::builtin();
    let brand = Brand {
        name: checker.non_empty(&raw.brand.name, "brand.name"),
        contact: raw.brand.contact,
        policy_url: raw.brand.policy_url,
    };

    let jurisdictions: Vec<Jurisdiction> = in_file_order(raw.jurisdictions)
        .into_iter()
        .map(|(key, raw)| {
            check_key(checker, &key, "jurisdiction");
            let default_deadline = match raw.regime {
                Regime::OptIn => 30,
                Regime::OptOut => 45,
            };
            let request_deadline_days = match raw.request_deadline_days {
                Some(days) if *days.get_ref() == 0 || *days.get_ref() > 365 => {
                    checker.at(days.span(), "request_deadline_days must be between 1 and 365");
                    default_deadline
                }
                Some(days) => days.into_inner(),
                None => default_deadline,
            };
            // GDPR art. 12(3): two further months; CCPA (11 CCR §7021): 45 more days, once.
            let default_extension = match raw.regime {
                Regime::OptIn => 60,
                Regime::OptOut => 45,
            };
            let request_extension_days = match raw.request_extension_days {
                Some(days) if *days.get_ref() > 365 => {
                    checker.at(days.span(), "request_extension_days must be between 0 and 365");
                    default_extension
                }
                Some(days) => days.into_inner(),
                None => default_extension,
            };
            for country in &raw.countries {
                let code = country.get_ref();
                let well_formed = match code.split_once('-') {
                    Some((country, region)) => is_country(country) && !region.is_empty() && region.len() <= 3,
                    None => is_country(code),
                };
                if !well_formed {
                    checker.at(
                        country.span(),
                        format!("{code:?} is not a country code (\"DE\") or region (\"US-CA\")"),
                    );
                }
            }
            Jurisdiction {
                key: key.into_inner(),
                name: checker.non_empty(&raw.name, "jurisdiction name"),
                regime: raw.regime,
                request_deadline_days,
                request_extension_days,
                countries: raw.countries.into_iter().map(Spanned::into_inner).collect(),
                channel_consent: raw.channel_consent.unwrap_or(true),
                no_personal_data_in_analytics: raw.no_personal_data_in_analytics,
            }
        })
        .collect();

    let mut sources = Vec::new();
    let mut source_by_write_key = HashMap::new();
    if raw.sources.is_empty() {
        checker.problems.push(Problem {
            line: 0,
            column: 0,
            message: "no [sources.*] declared: nothing could send events".into(),
        });
    }
    for (key, raw) in in_file_order(raw.sources) {
        check_key(checker, &key, "source");
        let id = SourceId(u16::try_from(sources.len()).unwrap_or(u16::MAX));
        let write_key = raw.write_key.get_ref().trim().to_owned();
        if write_key.len() < 8 {
            checker.at(raw.write_key.span(), "write_key must be at least 8 characters");
        } else if source_by_write_key.insert(write_key.clone(), id).is_some() {
            checker.at(raw.write_key.span(), "this write_key is already used by another source");
        }
        if let Some(jurisdiction) = &raw.default_jurisdiction
            && !jurisdictions.iter().any(|declared| &declared.key == jurisdiction.get_ref())
        {
            checker.at(
                jurisdiction.span(),
                format!(
                    "unknown jurisdiction {:?}: declare it under [jurisdictions]",
                    jurisdiction.get_ref()
                ),
            );
        }
        for origin in &raw.allowed_origins {
            let origin_text = origin.get_ref();
            let well_formed = origin_text == "*"
                || ((origin_text.starts_with("http://") || origin_text.starts_with("https://"))
                    && !origin_text.trim_end_matches('/').contains(|c: char| c.is_whitespace())
                    && origin_text.matches('/').count() == 2);
            if !well_formed {
                checker.at(
                    origin.span(),
                    format!(
                        "{origin_text:?} is not an origin: write it as \"https://shop.example\" or \"*\""
                    ),
                );
            }
        }
        sources.push(Source {
            id,
            name: raw.name.unwrap_or_else(|| key.get_ref().clone()),
            key: key.into_inner(),
            write_key: Secret::new(write_key),
            strict: raw.strict,
            allowed_origins: raw.allowed_origins.into_iter().map(Spanned::into_inner).collect(),
            default_jurisdiction: raw.default_jurisdiction.map(Spanned::into_inner),
            allow_sensitive: raw.allow_sensitive,
        });
    }

    let mut purposes = Vec::new();
    for (key, raw) in in_file_order(raw.purposes) {
        check_taxonomy_key(checker, &key, TaxonomyKind::DataUse);
        let version = match raw.version {
            Some(version) if *version.get_ref() == 0 => {
                checker.at(version.span(), "version starts at 1");
                1
            }
            Some(version) => version.into_inner(),
            None => 1,
        };
        purposes.push(Purpose {
            name: checker.non_empty(&raw.name, "purpose name"),
            description: checker.non_empty(&raw.description, "purpose description"),
            benefit: checker.non_empty(&raw.benefit, "purpose benefit (what the customer gets from it)"),
            version,
            key: key.into_inner(),
        });
    }

    let mut properties = Vec::new();
    let mut property_by_path = HashMap::new();
    let mut path_spans = Vec::new();
    for (path, raw) in in_file_order(raw.properties) {
        check_path(checker, &path);
        check_taxonomy_key(checker, &raw.category, TaxonomyKind::Category);
        let category = raw.category.get_ref();
        if taxonomy.is_sensitive_category(category) && !raw.sensitive {
            checker.at(
                raw.category.span(),
                format!(
                    "{category} is a sensitive category: mark this property `sensitive = true` to collect it"
                ),
            );
        }
        if raw.purposes.get_ref().is_empty() {
            checker.at(raw.purposes.span(), "a property must serve at least one purpose");
        }
        for purpose in raw.purposes.get_ref() {
            if !purposes.iter().any(|declared: &Purpose| &declared.key == purpose.get_ref()) {
                let hint = taxonomy::suggest(purpose.get_ref(), purposes.iter().map(|p| p.key.as_str()))
                    .map(|key| format!(" (did you mean {key:?}?)"))
                    .unwrap_or_default();
                checker.at(
                    purpose.span(),
                    format!("purpose {:?} is not declared under [purposes]{hint}", purpose.get_ref()),
                );
            }
        }
        let retention = match raw.retention.get_ref().parse::<Retention>() {
            Ok(retention) => retention,
            Err(error) => {
                checker.at(raw.retention.span(), error.to_string());
                Retention::days(1)
            }
        };
        let identifier =
            raw.identifier.as_ref().and_then(|kind| match kind.get_ref().parse::<IdentifierKind>() {
                Ok(IdentifierKind::UserId | IdentifierKind::AnonymousId) => {
                    checker
                        .at(kind.span(), "userId and anonymousId are identifiers already; pick another name");
                    None
                }
                Ok(kind) => Some(kind),
                Err(error) => {
                    checker.at(kind.span(), error.to_string());
                    None
                }
            });
        let id = PropertyId(u16::try_from(properties.len()).unwrap_or(u16::MAX));
        property_by_path.insert(path.get_ref().clone(), id);
        path_spans.push((path.get_ref().clone(), path.span()));
        properties.push(Property {
            id,
            category: category.clone(),
            purposes: raw.purposes.into_inner().into_iter().map(Spanned::into_inner).collect(),
            retention,
            sensitive: raw.sensitive,
            identifier,
            description: raw.description,
            path: path.into_inner(),
        });
    }

    // A declared path inside another declared path would make it ambiguous which declaration
    // (category, purposes, retention) governs the inner value.
    let mut path_prefixes = HashSet::new();
    for (path, span) in &path_spans {
        for (at, c) in path.char_indices() {
            let prefix = match c {
                '.' | '[' => &path[..at],
                ']' => &path[..=at],
                _ => continue,
            };
            if property_by_path.contains_key(prefix) {
                checker
                    .at(span.clone(), format!("{path} lies inside {prefix}, which is declared as a whole"));
            }
            path_prefixes.insert(prefix.to_owned());
        }
    }

    let events = in_file_order(raw.events)
        .into_iter()
        .map(|(name, raw)| {
            if name.get_ref().trim().is_empty() {
                checker.at(name.span(), "event name must not be empty");
            }
            let item = raw.item.as_ref().and_then(|item| {
                let found = property_by_path.get(item.get_ref()).copied();
                if found.is_none() {
                    checker.at(item.span(), format!("item property {:?} is not declared", item.get_ref()));
                }
                found
            });
            EventSpec { name: name.into_inner(), description: raw.description, feedback: raw.feedback, item }
        })
        .collect();

    let roles = in_file_order(raw.roles)
        .into_iter()
        .map(|(name, raw)| {
            check_key(checker, &name, "role");
            for purpose in &raw.purposes {
                check_taxonomy_key(checker, purpose, TaxonomyKind::DataUse);
            }
            for category in &raw.categories {
                check_taxonomy_key(checker, category, TaxonomyKind::Category);
            }
            Role {
                name: name.into_inner(),
                description: raw.description,
                purposes: raw.purposes.into_iter().map(Spanned::into_inner).collect(),
                categories: raw.categories.into_iter().map(Spanned::into_inner).collect(),
            }
        })
        .collect();

    let mut seen_countries: HashMap<String, String> = HashMap::new();
    for jurisdiction in &jurisdictions {
        for country in &jurisdiction.countries {
            if let Some(other) = seen_countries.insert(country.clone(), jurisdiction.key.clone()) {
                checker.problems.push(Problem {
                    line: 0,
                    column: 0,
                    message: format!(
                        "{country} is listed in both jurisdictions {other} and {}",
                        jurisdiction.key
                    ),
                });
            }
        }
    }

    let subjects = match raw.subjects {
        None => SubjectTraits::default(),
        Some(raw) => {
            let mut trait_path = |path: Option<S<String>>| {
                let path = path?;
                let inside_declared = property_by_path.contains_key(path.get_ref())
                    || path
                        .get_ref()
                        .char_indices()
                        .any(|(at, c)| c == '.' && property_by_path.contains_key(&path.get_ref()[..at]));
                if !inside_declared {
                    checker.at(
                        path.span(),
                        format!(
                            "{} is not collected: declare it (or an object holding it) under [properties]",
                            path.get_ref()
                        ),
                    );
                }
                Some(path.into_inner())
            };
            let country = trait_path(raw.country_trait);
            let region = trait_path(raw.region_trait);
            let birthday = trait_path(raw.birthday_trait);
            let adult_age = match raw.adult_age {
                Some(age) if !(1..=30).contains(age.get_ref()) => {
                    checker.at(age.span(), "adult_age must be between 1 and 30");
                    18
                }
                Some(age) => age.into_inner(),
                None => 18,
            };
            SubjectTraits { country, region, birthday, adult_age }
        }
    };

    let consent_categories = in_file_order(raw.consent_categories)
        .into_iter()
        .map(|(id, mapped)| {
            if mapped.is_empty() {
                checker.at(id.span(), "a consent category must map to at least one purpose");
            }
            for purpose in &mapped {
                if !purposes.iter().any(|declared| &declared.key == purpose.get_ref()) {
                    checker.at(
                        purpose.span(),
                        format!("purpose {:?} is not declared under [purposes]", purpose.get_ref()),
                    );
                }
            }
            (id.into_inner(), mapped.into_iter().map(Spanned::into_inner).collect())
        })
        .collect();

    let mut guardrails: Vec<Guardrail> = Vec::new();
    for raw in raw.guardrails {
        let name = checker.non_empty(&raw.name, "guardrail name");
        if guardrails.iter().any(|existing| existing.name == name) {
            checker.at(raw.name.span(), format!("another guardrail is already named {name:?}"));
        }
        for category in &raw.categories {
            check_taxonomy_key(checker, category, TaxonomyKind::Category);
        }
        for purpose in &raw.purposes {
            check_taxonomy_key(checker, purpose, TaxonomyKind::DataUse);
        }
        for jurisdiction in &raw.jurisdictions {
            if !jurisdictions.iter().any(|declared| &declared.key == jurisdiction.get_ref()) {
                checker.at(
                    jurisdiction.span(),
                    format!(
                        "unknown jurisdiction {:?}: declare it under [jurisdictions]",
                        jurisdiction.get_ref()
                    ),
                );
            }
        }
        let guardrail = Guardrail {
            name,
            description: raw.description,
            categories: raw.categories.into_iter().map(Spanned::into_inner).collect(),
            purposes: raw.purposes.into_iter().map(Spanned::into_inner).collect(),
            jurisdictions: raw.jurisdictions.into_iter().map(Spanned::into_inner).collect(),
            minors: raw.minors,
        };
        if guardrail.categories.is_empty() && guardrail.purposes.is_empty() {
            checker.at(
                raw.name.span(),
                "a guardrail needs categories, purposes, or both: it would forbid everything",
            );
        } else {
            // Analysable at load: a rule that matches no declared property and purpose is a typo or
            // stale, and would silently protect nothing.
            let matches_something = properties.iter().any(|property| {
                guardrail.applies_to_category(&property.category)
                    && property.purposes.iter().any(|purpose| guardrail.applies_to_purpose(purpose))
            });
            if !matches_something {
                checker.at(raw.name.span(), format!("guardrail {:?} matches no declared property and purpose, so it would protect nothing", guardrail.name));
            }
        }
        guardrails.push(guardrail);
    }

    let destinations = check_destinations(checker, raw.destinations, &properties);
    let lifecycle = personalization::declares_lifecycle(raw.personalization.as_ref());
    let personalization = personalization::check(checker, raw.personalization, &purposes, &properties);
    let analytics = analytics::check(checker, raw.analytics, &purposes, &properties, lifecycle);

    Catalog {
        brand,
        sources,
        purposes,
        properties,
        events,
        jurisdictions,
        roles,
        subjects,
        consent_categories,
        guardrails,
        source_by_write_key,
        property_by_path,
        path_prefixes,
        destinations,
        personalization,
        analytics,
        sha256: String::new(),
    }
}

fn check_destinations(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawDestination>,
    properties: &[Property],
) -> Vec<Destination> {
    let mut destinations = Vec::new();
    for (key, raw) in in_file_order(raw) {
        check_key(checker, &key, "destination");
        let url = raw.url.get_ref().trim().to_owned();
        match url.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => {}
            Some(("http", rest)) if is_loopback(rest) => {}
            Some(("http", _)) => checker.at(
                raw.url.span(),
                "identifiers would travel in clear: use https:// (http:// only for localhost)",
            ),
            _ => checker.at(raw.url.span(), format!("{url:?} is not an http(s) URL")),
        }
        if raw.secret.get_ref().trim().len() < 16 {
            checker.at(raw.secret.span(), "secret must be at least 16 characters (it signs every request)");
        }
        let mut receives = Vec::new();
        if raw.receives.is_empty() {
            checker.at(key.span(), "a destination must receive something (receives = [\"erase\", …])");
        }
        for message in &raw.receives {
            match DestinationMessage::parse(message.get_ref()) {
                Some(parsed) => receives.push(parsed),
                None => checker.at(
                    message.span(),
                    format!(
                        "{:?} is not something a destination can receive: one of {}",
                        message.get_ref(),
                        DestinationMessage::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ),
            }
        }
        let mut identifiers = Vec::new();
        for kind in &raw.identifiers {
            match kind.get_ref().parse::<IdentifierKind>() {
                Ok(parsed)
                    if matches!(parsed, IdentifierKind::UserId | IdentifierKind::AnonymousId)
                        || properties.iter().any(|property| property.identifier.as_ref() == Some(&parsed)) =>
                {
                    identifiers.push(parsed);
                }
                _ => checker.at(
                    kind.span(),
                    format!(
                        "{:?} identifies nobody here: use user_id, anonymous_id or an identifier a property declares",
                        kind.get_ref()
                    ),
                ),
            }
        }
        let give_up_after = match &raw.give_up_after {
            Some(text) => text.get_ref().parse::<Retention>().unwrap_or_else(|error| {
                checker.at(text.span(), error.to_string());
                Retention::days(3)
            }),
            None => Retention::days(3),
        };
        destinations.push(Destination {
            name: raw.name.unwrap_or_else(|| key.get_ref().clone()),
            key: key.into_inner(),
            url,
            secret: Secret::new(raw.secret.into_inner().trim()),
            receives,
            identifiers,
            give_up_after,
        });
    }
    destinations
}

/// Whether the part of a URL after `http://` names this machine.
fn is_loopback(rest: &str) -> bool {
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(host, _)| host),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

fn is_country(code: &str) -> bool {
    code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase())
}

/// Keys of sources, jurisdictions and roles appear in URLs, logs and the CLI: keep them simple.
fn check_key(checker: &mut Checker<'_>, key: &S<String>, what: &str) {
    let text = key.get_ref();
    let simple = !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !simple {
        checker.at(key.span(), format!("{what} name {text:?} may use only a-z, 0-9, '_' and '-'"));
    }
}

fn check_path(checker: &mut Checker<'_>, path: &S<String>) {
    let text = path.get_ref();
    let Some((root, rest)) = text.split_once('.') else {
        checker.at(path.span(), format!("{text:?} must start with traits., properties. or context."));
        return;
    };
    if !matches!(root, "traits" | "properties" | "context") {
        checker.at(path.span(), format!("{text:?} must start with traits., properties. or context."));
        return;
    }
    if matches!(text.as_str(), "context.consent" | "context.consentManagement")
        || text.starts_with("context.consent.")
        || text.starts_with("context.consentManagement.")
    {
        checker
            .at(path.span(), format!("{text} carries consent signals and cannot be declared as a property"));
        return;
    }
    for segment in rest.split('.') {
        let name = segment.strip_suffix("[]").unwrap_or(segment);
        if !super::looks_like_field_name(name) {
            checker.at(
                path.span(),
                format!(
                    "{text:?} has a segment {segment:?} that is not a field name (letters, digits, '_', '-', '$', \
                     starting with a letter)"
                ),
            );
            return;
        }
    }
}

#[derive(Clone, Copy)]
enum TaxonomyKind {
    Category,
    DataUse,
}

/// A key must be in the taxonomy, or extend a key that is (fideslang allows custom children).
fn check_taxonomy_key(checker: &mut Checker<'_>, key: &S<String>, kind: TaxonomyKind) {
    let taxonomy = Taxonomy::builtin();
    let text = key.get_ref();
    let known = |candidate: &str| match kind {
        TaxonomyKind::Category => taxonomy.category(candidate).is_some(),
        TaxonomyKind::DataUse => taxonomy.data_use(candidate).is_some(),
    };
    if known(text) {
        return;
    }
    let (what, suggestion) = match kind {
        TaxonomyKind::Category => ("data category", taxonomy.suggest_category(text)),
        TaxonomyKind::DataUse => ("data use (purpose)", taxonomy.suggest_data_use(text)),
    };
    // A custom child extends a known key (fideslang allows custom taxonomy entries), unless it is
    // so close to a known sibling ("user.contact.emial") that it is surely a typo.
    let extends_known = text.rsplit_once('.').is_some_and(|(parent, child)| {
        known(parent) && !child.is_empty() && child.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    });
    let sibling_typo = suggestion.is_some_and(|near| {
        near.rsplit_once('.').map(|(parent, _)| parent) == text.rsplit_once('.').map(|(parent, _)| parent)
    });
    if extends_known && !sibling_typo {
        return;
    }
    let hint = suggestion.map(|key| format!(" (did you mean {key:?}?)")).unwrap_or_default();
    checker.at(key.span(), format!("{text:?} is not a fideslang {what}{hint}"));
}
