//! The catalog as fideslang resources: the brand as the organization and controller, Tactful as a
//! system with one privacy declaration per purpose (the categories it uses, the longest retention
//! of its data, whether it holds special-category data or shares with third parties), and a dataset
//! with one collection per event root (`traits`, `properties`, `context`) and one field per property.

use super::yaml::{Node, render};
use super::{DATA_SUBJECT, RETENTION_META, fides_key};
use crate::catalog::{Catalog, Property, Purpose};

/// The catalog as one fideslang YAML document (`organization`, `system` and `dataset` lists), the
/// same bytes for the same catalog.
pub fn export(catalog: &Catalog) -> String {
    let brand = catalog.brand();
    let organization = fides_key(&brand.name);
    let system = format!("{organization}_tactful");
    let dataset = format!("{organization}_customer_data");
    let mut text = format!(
        "# fideslang data map of {name}, written by `tactful catalog export --format fides` from the\n\
         # catalog with SHA-256 {sha}.\n\
         # Each privacy declaration's retention_period is the longest retention of its data, in days;\n\
         # each field's own retention is in the dataset's meta ({RETENTION_META}).\n",
        name = brand.name.replace('\n', " "),
        sha = catalog.sha256(),
    );
    let document = vec![
        ("organization".to_owned(), Node::List(vec![organization_node(catalog, &organization)])),
        ("system".to_owned(), Node::List(vec![system_node(catalog, &organization, &system, &dataset)])),
        ("dataset".to_owned(), Node::List(vec![dataset_node(catalog, &organization, &dataset)])),
    ];
    text.push_str(&render(&document));
    text
}

fn entry(key: &str, value: Node) -> (String, Node) {
    (key.to_owned(), value)
}

fn organization_node(catalog: &Catalog, key: &str) -> Node {
    let brand = catalog.brand();
    let mut controller = vec![entry("name", Node::str(&brand.name))];
    if let Some(contact) = brand.contact.as_deref().filter(|contact| contact.contains('@')) {
        controller.push(entry("email", Node::str(contact)));
    }
    Node::Map(vec![
        entry("fides_key", Node::str(key)),
        entry("name", Node::str(&brand.name)),
        entry("description", Node::str(format!("{}, the controller of the data in this map.", brand.name))),
        entry("controller", Node::Map(controller)),
    ])
}

fn system_node(catalog: &Catalog, organization: &str, key: &str, dataset: &str) -> Node {
    let brand = catalog.brand();
    let mut entries = vec![
        entry("fides_key", Node::str(key)),
        entry("organization_fides_key", Node::str(organization)),
        entry("name", Node::str(format!("{} customer data (Tactful)", brand.name))),
        entry(
            "description",
            Node::str(
                "Collects customer events and traits from the brand's apps, stores only what the catalog \
                 declares, each value encrypted per person, and uses it only for the purposes each person permits.",
            ),
        ),
        entry("system_type", Node::str("Service")),
        entry("responsibility", Node::strs(["Controller"])),
        entry("legal_name", Node::str(&brand.name)),
    ];
    if let Some(url) = &brand.policy_url {
        entries.push(entry("privacy_policy", Node::str(url)));
    }
    if let Some(contact) = &brand.contact {
        entries.push(entry("dpo", Node::str(contact)));
    }
    entries.push(entry("dataset_references", Node::strs([dataset])));
    let declarations =
        catalog.purposes().iter().map(|purpose| declaration(catalog, purpose, dataset)).collect();
    entries.push(entry("privacy_declarations", Node::List(declarations)));
    Node::Map(entries)
}

/// One purpose as a privacy declaration: what it uses, for how long at most, and with whom.
fn declaration(catalog: &Catalog, purpose: &Purpose, dataset: &str) -> Node {
    let serving: Vec<&Property> =
        catalog.properties().iter().filter(|property| property.purposes.contains(&purpose.key)).collect();
    let mut categories: Vec<&str> = Vec::new();
    for property in &serving {
        if !categories.contains(&property.category.as_str()) {
            categories.push(&property.category);
        }
    }
    let mut entries = vec![
        entry("name", Node::str(&purpose.name)),
        entry("data_use", Node::str(&purpose.key)),
        entry("data_categories", Node::strs(&categories)),
        entry("data_subjects", Node::strs([DATA_SUBJECT])),
        entry("dataset_references", Node::strs([dataset])),
    ];
    if crate::taxonomy::covers("essential.legal_obligation", &purpose.key) {
        entries.push(entry("legal_basis_for_processing", Node::str("Legal obligations")));
    }
    if let Some(longest) = serving.iter().map(|property| property.retention.as_days()).max() {
        entries.push(entry("retention_period", Node::str(longest.to_string())));
    }
    if serving.iter().any(|property| property.sensitive) {
        entries.push(entry("processes_special_category_data", Node::Bool(true)));
    }
    if purpose.key.split('.').any(|segment| segment == "third_party") {
        entries.push(entry("data_shared_with_third_parties", Node::Bool(true)));
        entries.push(entry("shared_categories", Node::strs(&categories)));
    }
    Node::Map(entries)
}

fn dataset_node(catalog: &Catalog, organization: &str, key: &str) -> Node {
    let brand = catalog.brand();
    let retention = catalog
        .properties()
        .iter()
        .map(|property| (property.path.clone(), Node::str(property.retention.to_string())))
        .collect();
    let mut collections = Vec::new();
    for root in ["traits", "properties", "context"] {
        let mut tree = Vec::new();
        for property in catalog.properties() {
            if let Some(rest) = property.path.strip_prefix(root).and_then(|rest| rest.strip_prefix('.')) {
                insert(&mut tree, rest.split('.').collect(), property);
            }
        }
        if !tree.is_empty() {
            collections.push(Node::Map(vec![
                entry("name", Node::str(root)),
                entry("description", Node::str(collection_description(root))),
                entry("fields", Node::List(tree.iter().map(field_node).collect())),
            ]));
        }
    }
    Node::Map(vec![
        entry("fides_key", Node::str(key)),
        entry("organization_fides_key", Node::str(organization)),
        entry("name", Node::str(format!("{} customer data", brand.name))),
        entry(
            "description",
            Node::str(
                "Every value Tactful may store, by where it arrives in a Segment-protocol message; \
                 anything else is dropped at the door.",
            ),
        ),
        entry("meta", Node::Map(vec![entry(RETENTION_META, Node::Map(retention))])),
        entry("data_subjects", Node::strs([DATA_SUBJECT])),
        entry("collections", Node::List(collections)),
    ])
}

fn collection_description(root: &str) -> &'static str {
    match root {
        "traits" => "What identify calls say about a person (traits.*).",
        "properties" => "What track events carry (properties.*).",
        _ => "What the SDK adds to every message (context.*).",
    }
}

/// A field of the dataset: a declared property, or an object or array of objects holding some.
struct Field<'a> {
    name: String,
    array: bool,
    property: Option<&'a Property>,
    children: Vec<Field<'a>>,
}

fn insert<'a>(tree: &mut Vec<Field<'a>>, segments: Vec<&str>, property: &'a Property) {
    let Some((first, rest)) = segments.split_first() else { return };
    let (name, array) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    let position = match tree.iter().position(|field| field.name == name) {
        Some(position) => position,
        None => {
            tree.push(Field { name: name.to_owned(), array, property: None, children: Vec::new() });
            tree.len() - 1
        }
    };
    let field = &mut tree[position];
    if rest.is_empty() {
        field.property = Some(property);
    } else {
        insert(&mut field.children, rest.to_vec(), property);
    }
}

fn field_node(field: &Field<'_>) -> Node {
    let mut entries = vec![entry("name", Node::str(&field.name))];
    let mut meta = Vec::new();
    if let Some(property) = field.property {
        if let Some(description) = &property.description {
            entries.push(entry("description", Node::str(description)));
        }
        entries.push(entry("data_categories", Node::strs([&property.category])));
        entries.push(entry("data_uses", Node::strs(&property.purposes)));
        if let Some(kind) = &property.identifier {
            meta.push(entry("identity", Node::str(kind.as_str())));
        }
    }
    if !field.children.is_empty() {
        meta.push(entry("data_type", Node::str(if field.array { "object[]" } else { "object" })));
    }
    if !meta.is_empty() {
        entries.push(entry("fides_meta", Node::Map(meta)));
    }
    if !field.children.is_empty() {
        entries.push(entry("fields", Node::List(field.children.iter().map(field_node).collect())));
    }
    Node::Map(entries)
}
