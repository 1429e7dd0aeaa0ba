//! A fideslang file (organization, system and dataset resources, as Fides writes them) read back as
//! a Tactful catalog skeleton in TOML: the brand, a purpose per data use, a property per dataset
//! field with its category, purposes, retention and identity. What fideslang has no place for is left
//! empty, so `tactful catalog check` names each gap with its line and column.

use std::fmt::Write as _;

use yaml_rust2::{Yaml, YamlLoader};

use super::RETENTION_META;
use crate::period::Retention;
use crate::taxonomy::{self, Taxonomy};

/// The skeleton, and what the reader should know about how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The catalog skeleton (TOML).
    pub toml: String,
    /// Deprecated keys replaced, choices made, things dropped.
    pub warnings: Vec<String>,
}

/// Why a file could not be read as fideslang at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("{line}:{column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("{0}")]
    Shape(String),
}

/// A privacy declaration of a system, as far as the catalog can use it.
struct Declaration {
    name: Option<String>,
    data_use: String,
    categories: Vec<String>,
    retention_days: Option<u32>,
    datasets: Vec<String>,
}

/// A dataset field that holds data of some category: a property to be.
struct FieldEntry {
    dataset: String,
    path: String,
    /// Whether the path starts where events carry values (`traits`, `properties`, `context`).
    in_events: bool,
    categories: Vec<String>,
    uses: Vec<String>,
    description: Option<String>,
    identity: Option<String>,
    retention: Option<String>,
}

/// Reads a fideslang YAML file into a catalog skeleton.
pub fn import(text: &str) -> Result<Imported, ImportError> {
    let documents = YamlLoader::load_from_str(text).map_err(|error| ImportError::Syntax {
        line: error.marker().line(),
        column: error.marker().col() + 1,
        message: error.info().to_owned(),
    })?;
    let mut reader = Reader { warnings: Vec::new() };
    let mut organizations = Vec::new();
    let mut systems = Vec::new();
    let mut datasets = Vec::new();
    for document in &documents {
        if document.as_hash().is_none() {
            return Err(ImportError::Shape(
                "a fideslang file is a mapping with `system:`, `dataset:` or `organization:` lists"
                    .to_owned(),
            ));
        }
        organizations.extend(list(&document["organization"]));
        systems.extend(list(&document["system"]));
        datasets.extend(list(&document["dataset"]));
    }
    if systems.is_empty() && datasets.is_empty() {
        return Err(ImportError::Shape(
            "no fideslang system or dataset found (expected top-level `system:` or `dataset:` lists)"
                .to_owned(),
        ));
    }
    let declarations: Vec<Declaration> = systems
        .iter()
        .flat_map(|system| list(&system["privacy_declarations"]))
        .map(|declaration| reader.declaration(declaration))
        .collect();
    let mut fields = Vec::new();
    for dataset in &datasets {
        reader.dataset(dataset, &mut fields);
    }
    let brand = brand(organizations.first().copied(), systems.first().copied());
    let toml = write(&brand, &declarations, &fields, &mut reader);
    Ok(Imported { toml, warnings: reader.warnings })
}

fn list(node: &Yaml) -> Vec<&Yaml> {
    node.as_vec().map(|items| items.iter().collect()).unwrap_or_default()
}

fn text(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(text) if !text.trim().is_empty() => Some(text.clone()),
        Yaml::Integer(number) => Some(number.to_string()),
        Yaml::Real(number) => Some(number.clone()),
        _ => None,
    }
}

fn strings(node: &Yaml) -> Vec<String> {
    list(node).into_iter().filter_map(text).collect()
}

struct Brand {
    name: Option<String>,
    contact: Option<String>,
    policy_url: Option<String>,
}

fn brand(organization: Option<&Yaml>, system: Option<&Yaml>) -> Brand {
    let from_organization = |key: &str| organization.and_then(|node| text(&node[key]));
    let from_system = |key: &str| system.and_then(|node| text(&node[key]));
    Brand {
        name: from_organization("name").or_else(|| from_system("legal_name")),
        contact: organization
            .and_then(|node| text(&node["controller"]["email"]))
            .or_else(|| from_system("dpo")),
        policy_url: from_system("privacy_policy"),
    }
}

struct Reader {
    warnings: Vec<String>,
}

impl Reader {
    /// A taxonomy key as the catalog should spell it: a deprecated key is replaced, with a warning.
    fn key(&mut self, key: String) -> String {
        match taxonomy::deprecated(&key) {
            Some(deprecation) => {
                let warning = format!(
                    "{key} is deprecated since fideslang {}: written as {}",
                    deprecation.since, deprecation.replaced_by
                );
                if !self.warnings.contains(&warning) {
                    self.warnings.push(warning);
                }
                deprecation.replaced_by.to_owned()
            }
            None => key,
        }
    }

    fn keys(&mut self, keys: Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for key in keys {
            let key = self.key(key);
            if !out.contains(&key) {
                out.push(key);
            }
        }
        out
    }

    fn declaration(&mut self, node: &Yaml) -> Declaration {
        let data_use = self.key(text(&node["data_use"]).unwrap_or_default());
        let retention = text(&node["retention_period"]);
        let retention_days = retention.as_deref().and_then(days);
        if let (Some(retention), None) = (&retention, retention_days) {
            self.warnings.push(format!(
                "the retention period {retention:?} of {data_use} is not a number of days; not used"
            ));
        }
        Declaration {
            name: text(&node["name"]),
            data_use,
            categories: self.keys(strings(&node["data_categories"])),
            retention_days,
            datasets: strings(&node["dataset_references"]),
        }
    }

    /// The uses a resource lists, under `data_uses` or its deprecated alias `data_purposes`.
    fn uses(&mut self, node: &Yaml, path: &str) -> Vec<String> {
        let mut uses = strings(&node["data_uses"]);
        let purposes = strings(&node["data_purposes"]);
        if uses.is_empty() && !purposes.is_empty() {
            self.warnings
                .push(format!("{path}: data_purposes is deprecated in fideslang; read as data_uses"));
            uses = purposes;
        }
        self.keys(uses)
    }

    fn dataset(&mut self, dataset: &Yaml, fields: &mut Vec<FieldEntry>) {
        let key = text(&dataset["fides_key"]).unwrap_or_default();
        let inherited = Inherited {
            categories: self.keys(strings(&dataset["data_categories"])),
            uses: self.uses(dataset, &key),
        };
        let retention = &dataset["meta"][RETENTION_META];
        for collection in list(&dataset["collections"]) {
            let Some(name) = text(&collection["name"]) else { continue };
            let inherited = inherited
                .under(self.keys(strings(&collection["data_categories"])), self.uses(collection, &name));
            let in_events = matches!(name.as_str(), "traits" | "properties" | "context");
            let context = Walk { dataset: &key, in_events, retention };
            for field in list(&collection["fields"]) {
                self.field(field, &name, &inherited, &context, fields);
            }
        }
    }

    fn field(
        &mut self,
        field: &Yaml,
        parent: &str,
        inherited: &Inherited,
        walk: &Walk<'_>,
        out: &mut Vec<FieldEntry>,
    ) {
        let Some(name) = text(&field["name"]) else { return };
        let meta = &field["fides_meta"];
        let array = text(&meta["data_type"]).is_some_and(|data_type| data_type.ends_with("[]"));
        let path = format!("{parent}.{name}{}", if array { "[]" } else { "" });
        let own_categories = self.keys(strings(&field["data_categories"]));
        let own_uses = self.uses(field, &path);
        let children = list(&field["fields"]);
        if !children.is_empty() {
            let inherited = inherited.under(own_categories, own_uses);
            for child in children {
                self.field(child, &path, &inherited, walk, out);
            }
            return;
        }
        let path = path.trim_end_matches("[]").to_owned();
        let categories =
            if own_categories.is_empty() { inherited.categories.clone() } else { own_categories };
        if categories.is_empty() {
            self.warnings.push(format!("{path} has no data category: left out (never stored)"));
            return;
        }
        let uses = if own_uses.is_empty() { inherited.uses.clone() } else { own_uses };
        out.push(FieldEntry {
            dataset: walk.dataset.to_owned(),
            retention: text(&walk.retention[path.as_str()]),
            in_events: walk.in_events,
            path,
            categories,
            uses,
            description: text(&field["description"]),
            identity: text(&meta["identity"]),
        });
    }
}

/// What a dataset or collection says for everything inside it.
#[derive(Clone)]
struct Inherited {
    categories: Vec<String>,
    uses: Vec<String>,
}

impl Inherited {
    fn under(&self, categories: Vec<String>, uses: Vec<String>) -> Inherited {
        Inherited {
            categories: if categories.is_empty() { self.categories.clone() } else { categories },
            uses: if uses.is_empty() { self.uses.clone() } else { uses },
        }
    }
}

/// Where a walk through a dataset's fields is.
struct Walk<'a> {
    dataset: &'a str,
    in_events: bool,
    retention: &'a Yaml,
}

/// A retention period of fideslang ("365", "365 days") as days.
fn days(text: &str) -> Option<u32> {
    let trimmed = text.trim();
    let number = trimmed.strip_suffix("days").or_else(|| trimmed.strip_suffix("day")).unwrap_or(trimmed);
    number.trim().parse::<u32>().ok().filter(|&days| days > 0)
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn quote_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|item| quote(item)).collect::<Vec<_>>().join(", "))
}

const HEADER: &str = "\
# Tactful catalog skeleton, written by `tactful catalog import` from a fideslang data map.
# `tactful catalog check` on this file names what is still missing, with its line and column:
# fideslang has no place for a purpose's description and benefit in plain words for customers,
# nor (outside a Tactful export) for where each value arrives in an event, and a field's
# retention only where a privacy declaration gives one. Then add the sources that send events,
# the jurisdictions, the tracking plan and the roles: `tactful catalog example` shows each.
";

fn write(brand: &Brand, declarations: &[Declaration], fields: &[FieldEntry], reader: &mut Reader) -> String {
    let mut out = String::from(HEADER);
    out.push_str("\n[brand]\n");
    let _ = writeln!(out, "name = {}", quote(brand.name.as_deref().unwrap_or_default()));
    if let Some(contact) = &brand.contact {
        let _ = writeln!(out, "contact = {}", quote(contact));
    }
    if let Some(url) = &brand.policy_url {
        let _ = writeln!(out, "policy_url = {}", quote(url));
    }
    let mut uses: Vec<&str> = Vec::new();
    for data_use in declarations
        .iter()
        .map(|d| d.data_use.as_str())
        .chain(fields.iter().flat_map(|f| f.uses.iter().map(String::as_str)))
    {
        if !data_use.is_empty() && !uses.contains(&data_use) {
            uses.push(data_use);
        }
    }
    for data_use in &uses {
        let name = declarations
            .iter()
            .find(|declaration| declaration.data_use == *data_use)
            .and_then(|declaration| declaration.name.clone())
            .or_else(|| Taxonomy::builtin().data_use(data_use).map(|entry| entry.name.to_owned()))
            .unwrap_or_else(|| (*data_use).to_owned());
        let _ = write!(
            out,
            "\n[purposes.{}]\nname = {}\ndescription = \"\"  # what the data is used for, in plain words for customers\nbenefit = \"\"  # what the customer gets from it\n",
            quote(data_use),
            quote(&name)
        );
    }
    for field in fields {
        write_property(&mut out, field, declarations, reader);
    }
    write_undeclared_fields(&mut out, declarations, fields);
    out
}

fn write_property(out: &mut String, field: &FieldEntry, declarations: &[Declaration], reader: &mut Reader) {
    let category = &field.categories[0];
    if field.categories.len() > 1 {
        reader.warnings.push(format!(
            "{} has {} data categories; a catalog property has one: {category} kept, {} left out",
            field.path,
            field.categories.len(),
            field.categories[1..].join(", ")
        ));
    }
    // Declarations about this field's data: the same category or one covering it, for its dataset.
    let about: Vec<&Declaration> = declarations
        .iter()
        .filter(|declaration| {
            declaration.datasets.is_empty() || declaration.datasets.contains(&field.dataset)
        })
        .filter(|declaration| declaration.categories.iter().any(|key| taxonomy::covers(key, category)))
        .collect();
    let purposes: Vec<String> = if field.uses.is_empty() {
        let mut found: Vec<String> = Vec::new();
        for declaration in &about {
            if !found.contains(&declaration.data_use) {
                found.push(declaration.data_use.clone());
            }
        }
        found
    } else {
        field.uses.clone()
    };
    let retention = field.retention.clone().or_else(|| {
        about
            .iter()
            .filter(|declaration| purposes.contains(&declaration.data_use))
            .filter_map(|declaration| declaration.retention_days)
            .min()
            .map(|days| Retention::days(days).to_string())
    });
    out.push('\n');
    if !field.in_events {
        out.push_str("# Say where this value arrives in events: traits., properties. or context.\n");
    }
    let _ = writeln!(out, "[properties.{}]", quote(&field.path));
    let _ = writeln!(out, "category = {}", quote(category));
    if Taxonomy::builtin().is_sensitive_category(category) {
        out.push_str(
            "sensitive = true  # a special category: only sources with allow_sensitive deliver it\n",
        );
    }
    let _ = write!(out, "purposes = {}", quote_list(&purposes));
    out.push_str(if purposes.is_empty() { "  # which purposes this value serves\n" } else { "\n" });
    match retention {
        Some(retention) => {
            let _ = writeln!(out, "retention = {}", quote(&retention));
        }
        None => out.push_str("retention = \"\"  # how long it is kept: \"30d\", \"12w\", \"2y\"\n"),
    }
    if let Some(identity) = &field.identity {
        let kind = match identity.as_str() {
            "phone_number" => Some("phone"),
            "user_id" | "anonymous_id" | "external_id" => None,
            other => Some(other),
        };
        if let Some(kind) = kind {
            let _ = writeln!(out, "identifier = {}", quote(kind));
        }
    }
    if let Some(description) = &field.description {
        let _ = writeln!(out, "description = {}", quote(description));
    }
}

/// Categories the privacy declarations name that no dataset field holds: properties whose path
/// fideslang does not say, written under the category's key so `catalog check` asks for one.
fn write_undeclared_fields(out: &mut String, declarations: &[Declaration], fields: &[FieldEntry]) {
    let mut seen: Vec<&str> = Vec::new();
    for declaration in declarations {
        for category in &declaration.categories {
            let held =
                fields.iter().any(|field| field.categories.iter().any(|key| taxonomy::covers(category, key)));
            if held || seen.contains(&category.as_str()) {
                continue;
            }
            seen.push(category);
            let purposes: Vec<String> = declarations
                .iter()
                .filter(|other| other.categories.contains(category))
                .map(|other| other.data_use.clone())
                .collect();
            let retention = declarations
                .iter()
                .filter(|other| other.categories.contains(category))
                .filter_map(|other| other.retention_days)
                .min();
            let _ = write!(
                out,
                "\n# A privacy declaration names {category}, but no dataset field holds it. Say where it arrives\n\
                 # in events (traits., properties. or context.).\n[properties.{}]\ncategory = {}\n",
                quote(category),
                quote(category)
            );
            if Taxonomy::builtin().is_sensitive_category(category) {
                out.push_str("sensitive = true\n");
            }
            let _ = writeln!(out, "purposes = {}", quote_list(&purposes));
            match retention {
                Some(days) => {
                    let _ = writeln!(out, "retention = {}", quote(&Retention::days(days).to_string()));
                }
                None => out.push_str("retention = \"\"  # how long it is kept: \"30d\", \"12w\", \"2y\"\n"),
            }
        }
    }
}
