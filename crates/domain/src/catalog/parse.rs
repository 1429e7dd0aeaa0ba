//! Reading a catalog from TOML: syntax and shape first (serde, with spans), then every semantic
//! rule, collecting all problems with their line and column so one run of `tactful catalog check`
//! shows everything to fix.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Brand, Catalog};
use crate::taxonomy::Taxonomy;

mod analytics;
mod destinations;
mod events;
mod guardrails;
mod identity;
mod jurisdictions;
mod personalization;
mod properties;
mod purposes;
mod roles;
mod sources;
mod subjects;
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

impl Problem {
    /// Where it is, as `file:line:column` (just `file` for the whole file), the way compilers
    /// print positions.
    pub fn position(&self, file: &str) -> String {
        match self.line {
            0 => file.to_owned(),
            line => format!("{file}:{line}:{}", self.column),
        }
    }
}

impl CatalogErrors {
    /// One line per problem, prefixed with `file:line:column`, the way compilers print them.
    pub fn render(&self, file: &str) -> String {
        self.problems
            .iter()
            .map(|problem| format!("{}: {}", problem.position(file), problem.message))
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
    sources: BTreeMap<S<String>, sources::RawSource>,
    #[serde(default)]
    jurisdictions: BTreeMap<S<String>, jurisdictions::RawJurisdiction>,
    #[serde(default)]
    purposes: BTreeMap<S<String>, purposes::RawPurpose>,
    #[serde(default)]
    properties: BTreeMap<S<String>, properties::RawProperty>,
    #[serde(default)]
    events: BTreeMap<S<String>, events::RawEvent>,
    #[serde(default)]
    roles: BTreeMap<S<String>, roles::RawRole>,
    #[serde(default)]
    subjects: Option<subjects::RawSubjects>,
    #[serde(default)]
    consent_categories: BTreeMap<S<String>, Vec<S<String>>>,
    #[serde(default)]
    guardrails: Vec<guardrails::RawGuardrail>,
    #[serde(default)]
    destinations: BTreeMap<S<String>, destinations::RawDestination>,
    personalization: Option<personalization::RawPersonalization>,
    analytics: Option<analytics::RawAnalytics>,
    identity: Option<identity::RawIdentity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBrand {
    name: S<String>,
    contact: Option<String>,
    policy_url: Option<String>,
}

/// Collects problems (which refuse the catalog) and notes (which do not) while it is checked.
struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
    notes: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_column(self.text, span.start);
        self.problems.push(Problem { line, column, message: message.into() });
    }

    fn note(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_column(self.text, span.start);
        self.notes.push(Problem { line, column, message: message.into() });
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
    let mut checker = Checker { text, problems: Vec::new(), notes: Vec::new() };
    let mut catalog = check(raw, &mut checker);
    if checker.problems.is_empty() {
        use sha2::Digest as _;
        catalog.sha256 = crate::encoding::hex(&sha2::Sha256::digest(text.as_bytes()));
        checker.notes.sort_by_key(|note| (note.line, note.column));
        catalog.notes = checker.notes;
        Ok(catalog)
    } else {
        checker.problems.sort_by_key(|problem| (problem.line, problem.column));
        Err(CatalogErrors { problems: checker.problems })
    }
}

/// Checks section by section, in an order where each section finds what it refers to already
/// checked (properties name purposes, guardrails name jurisdictions and properties, …).
fn check(raw: RawCatalog, checker: &mut Checker<'_>) -> Catalog {
    let brand = Brand {
        name: checker.non_empty(&raw.brand.name, "brand.name"),
        contact: raw.brand.contact,
        policy_url: raw.brand.policy_url,
    };
    let jurisdictions = jurisdictions::check(checker, raw.jurisdictions);
    let (sources, source_by_write_key) = sources::check(checker, raw.sources, &jurisdictions);
    let purposes = purposes::check(checker, raw.purposes);
    let (properties, property_by_path, path_prefixes) = properties::check(checker, raw.properties, &purposes);
    let events = events::check(checker, raw.events, &property_by_path);
    let roles = roles::check(checker, raw.roles);
    // Whole-file problems (no line) are listed in the order found: this one after the sources' one.
    jurisdictions::check_countries_once(checker, &jurisdictions);
    let subjects = subjects::check(checker, raw.subjects, &property_by_path);
    let consent_categories = purposes::check_consent_categories(checker, raw.consent_categories, &purposes);
    let guardrails = guardrails::check(checker, raw.guardrails, &jurisdictions, &properties);
    let destinations = destinations::check(checker, raw.destinations, &properties, &purposes, &events);
    let lifecycle = personalization::declares_lifecycle(raw.personalization.as_ref());
    let personalization = personalization::check(checker, raw.personalization, &purposes, &properties);
    let analytics = analytics::check(checker, raw.analytics, &purposes, &properties, lifecycle);
    let linking = identity::check(checker, raw.identity, &sources, &properties);

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
        linking,
        sha256: String::new(),
        notes: Vec::new(),
    }
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
