//! The catalog (data map): what the brand collects, from which sources, for which purposes, for how
//! long and under which law. Everything the product stores or decides is checked against it.

mod parse;

use std::collections::{HashMap, HashSet};

pub use parse::{CatalogErrors, Problem};

use crate::identity::IdentifierKind;
use crate::retention::Retention;
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
    source_by_write_key: HashMap<String, SourceId>,
    property_by_path: HashMap<String, PropertyId>,
    /// Every proper prefix of a declared path, so the minimizer knows when to descend into an object.
    path_prefixes: HashSet<String>,
}

/// Index of a source in its catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub(crate) u16);

/// Index of a property in its catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PropertyId(pub(crate) u16);

#[derive(Debug, Clone)]
pub struct Brand {
    pub name: String,
    pub contact: Option<String>,
    pub policy_url: Option<String>,
}

/// Where events come from: an app or SDK identified by its write key.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: SourceId,
    pub key: String,
    pub name: String,
    pub write_key: Secret,
    /// Reject events carrying undeclared properties instead of dropping those properties.
    pub strict: bool,
    /// Origins allowed to send from browsers (CORS). `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The jurisdiction of subjects first seen through this source when no trait says otherwise.
    pub default_jurisdiction: Option<String>,
    /// Whether this source may deliver properties in sensitive categories at all.
    pub allow_sensitive: bool,
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
}

/// A role API keys can carry: which purposes it may read for and which categories it may see.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    pub purposes: Vec<String>,
    pub categories: Vec<String>,
}

impl Catalog {
    /// Parses and validates a catalog, reporting every problem found with its position.
    pub fn parse(text: &str) -> Result<Catalog, CatalogErrors> {
        parse::parse(text)
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

    /// The annotated example catalog of a web shop that ships with Tactful and drives the demo.
    pub fn example_text() -> &'static str {
        include_str!("../../../../examples/tactful.toml")
    }
}

#[cfg(test)]
mod tests;
