//! What the brand console shows, computed from the store and the catalog on every visit so that no
//! figure can drift from what the software holds: the data map, consent rates over time, the
//! request queue, the audit log's state, minimization at work, the recommendation model and the
//! analytics budgets. Aggregates and ids only: nothing here opens a person's data.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use tactful_domain::catalog::{Catalog, Regime};
use tactful_domain::consent::ConsentKind;
use tactful_domain::minimize::DropReason;
use tactful_domain::notice::{self, Basis};
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_domain::segment::format_time;
use tactful_domain::taxonomy::Taxonomy;
use tactful_store::{DeliveryRecord, DeliveryStatus, LedgerEntry, RequestRecord, Store, StoreError};

use crate::App;
use chart::{BarChart, LineChart};

pub mod chart;
mod queue;
mod rates;
mod state;
mod visits;

pub use queue::*;
pub use rates::*;
pub use state::*;
pub use visits::*;

pub const DAY_MS: i64 = 86_400_000;
/// Days the consent charts cover, today included.
pub const DAYS: usize = 30;
/// Ledger entries read at a time while folding consent rates.
const LEDGER_PAGE: u32 = 5_000;
/// Open requests the queue shows, soonest deadline first.
pub const QUEUE_LIMIT: u32 = 200;
/// Finished requests shown below the queue.
const FINISHED_SHOWN: usize = 20;

// ---- The data map --------------------------------------------------------------------------------

/// The catalog as a privacy team reads it.
#[derive(Debug, Clone)]
pub struct CatalogOverview {
    pub catalog_sha256: String,
    pub categories: Vec<CategoryGroup>,
    pub purposes: Vec<PurposeRow>,
    /// The columns of the purposes' legal bases: each jurisdiction, then "anywhere else".
    pub basis_columns: Vec<String>,
    pub jurisdictions: Vec<JurisdictionRow>,
    pub sources: Vec<SourceRow>,
    pub guardrails: Vec<(String, String)>,
}

/// The properties of one data category.
#[derive(Debug, Clone)]
pub struct CategoryGroup {
    pub key: String,
    /// The taxonomy's name for it.
    pub name: String,
    pub sensitive: bool,
    pub properties: Vec<PropertyRow>,
}

#[derive(Debug, Clone)]
pub struct PropertyRow {
    pub path: String,
    pub description: String,
    /// The purposes it serves, by name.
    pub purposes: Vec<String>,
    pub retention: String,
    pub sensitive: bool,
    /// The identifier kind it is, if it identifies people.
    pub identifier: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PurposeRow {
    pub key: String,
    pub name: String,
    pub essential: bool,
    pub version: u32,
    /// How many properties serve it.
    pub properties: usize,
    /// Its basis per column of [`CatalogOverview::basis_columns`], in short words.
    pub bases: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct JurisdictionRow {
    pub key: String,
    pub name: String,
    pub regime: &'static str,
    pub deadline_days: u32,
    pub extension_days: u32,
    pub places: String,
    pub channel_consent: bool,
    pub no_personal_data_in_analytics: bool,
    pub honours_gpc: bool,
}

#[derive(Debug, Clone)]
pub struct SourceRow {
    pub key: String,
    pub name: String,
    /// Whether an event with an undeclared property is rejected (rather than the property dropped).
    pub strict: bool,
    pub default_jurisdiction: Option<String>,
    pub allow_sensitive: bool,
}

fn basis_in_short(basis: &Basis) -> String {
    match basis {
        Basis::Necessary => "necessary".into(),
        Basis::Consent => "opt-in consent".into(),
        Basis::ExplicitConsent => "explicit consent".into(),
        Basis::UnlessYouOptOut => "unless they opt out".into(),
        Basis::NeverBecause(rule) => format!("never (rule {rule})"),
        Basis::NeverInAnalytics => "never (no personal data in analytics)".into(),
    }
}

fn purpose_name(catalog: &Catalog, key: &str) -> String {
    catalog.purpose(key).map_or_else(|| key.to_owned(), |purpose| purpose.name.clone())
}

fn jurisdiction_name(catalog: &Catalog, key: Option<&str>) -> String {
    match key {
        Some(key) => catalog.jurisdiction(key).map_or_else(|| key.to_owned(), |j| j.name.clone()),
        None => "Jurisdiction not known".to_owned(),
    }
}

/// The data map: properties by category, purposes with their basis per jurisdiction,
/// jurisdictions, sources and the brand's own rules.
pub fn catalog_overview(app: &App) -> CatalogOverview {
    let catalog = &app.catalog;
    let taxonomy = Taxonomy::builtin();
    let mut categories: BTreeMap<&str, CategoryGroup> = BTreeMap::new();
    for property in catalog.properties() {
        let group = categories.entry(property.category.as_str()).or_insert_with(|| CategoryGroup {
            key: property.category.clone(),
            name: taxonomy
                .category(&property.category)
                .map_or_else(|| property.category.clone(), |entry| entry.name.to_owned()),
            sensitive: false,
            properties: Vec::new(),
        });
        group.sensitive |= property.sensitive;
        group.properties.push(PropertyRow {
            path: property.path.clone(),
            description: property.description.clone().unwrap_or_default(),
            purposes: property.purposes.iter().map(|key| purpose_name(catalog, key)).collect(),
            retention: property.retention.in_words(),
            sensitive: property.sensitive,
            identifier: property.identifier.as_ref().map(ToString::to_string),
        });
    }
    let notice = notice::notice(&app.policy);
    let mut basis_columns: Vec<String> = catalog.jurisdictions().iter().map(|j| j.name.clone()).collect();
    basis_columns.push("Anywhere else".to_owned());
    let purposes = notice
        .purposes
        .iter()
        .map(|purpose| PurposeRow {
            key: purpose.key.clone(),
            name: purpose.name.clone(),
            essential: purpose.essential,
            version: purpose.version,
            properties: catalog
                .properties()
                .iter()
                .filter(|p| {
                    p.purposes.iter().any(|served| tactful_domain::taxonomy::covers(served, &purpose.key))
                })
                .count(),
            bases: purpose
                .basis
                .iter()
                .map(|basis| match basis.uses.as_slice() {
                    [] => "no data".to_owned(),
                    [(only, _)] => basis_in_short(only),
                    uses => uses
                        .iter()
                        .map(|(basis, categories)| {
                            let n = categories.len();
                            format!(
                                "{} ({n} categor{})",
                                basis_in_short(basis),
                                if n == 1 { "y" } else { "ies" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                })
                .collect(),
        })
        .collect();
    let jurisdictions = catalog
        .jurisdictions()
        .iter()
        .map(|j| JurisdictionRow {
            key: j.key.clone(),
            name: j.name.clone(),
            regime: match j.regime {
                Regime::OptIn => "opt-in (consent first)",
                Regime::OptOut => "opt-out (allowed until they say no)",
            },
            deadline_days: j.request_deadline_days,
            extension_days: j.request_extension_days,
            places: j.countries.join(", "),
            channel_consent: j.channel_consent,
            no_personal_data_in_analytics: j.no_personal_data_in_analytics,
            honours_gpc: j.regime == Regime::OptOut,
        })
        .collect();
    let sources = catalog
        .sources()
        .iter()
        .map(|source| SourceRow {
            key: source.key.clone(),
            name: source.name.clone(),
            strict: source.strict,
            default_jurisdiction: source
                .default_jurisdiction
                .as_deref()
                .map(|key| jurisdiction_name(catalog, Some(key))),
            allow_sensitive: source.allow_sensitive,
        })
        .collect();
    let guardrails = catalog
        .guardrails()
        .iter()
        .map(|g| (g.name.clone(), g.description.clone().unwrap_or_default()))
        .collect();
    CatalogOverview {
        catalog_sha256: catalog.sha256().to_owned(),
        categories: categories.into_values().collect(),
        purposes,
        basis_columns,
        jurisdictions,
        sources,
        guardrails,
    }
}
