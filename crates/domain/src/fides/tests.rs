//! The exchange in both directions: the example catalog exported and read back keeps every
//! property's category, purposes, retention and identity; a fideslang file from elsewhere becomes a
//! skeleton whose gaps `catalog check` names by line.

use super::{ImportError, export, import};
use crate::catalog::Catalog;

fn example() -> Catalog {
    Catalog::parse(Catalog::example_text()).expect("the example catalog is valid")
}

/// The skeleton with the plain-words texts fideslang has no place for filled in, and a source.
fn filled(skeleton: &str) -> String {
    let source = "\n[sources.web]\nname = \"Web\"\nkind = \"server\"\nwrite_key = \"wk_test_web\"\nallow_sensitive = true\n";
    (skeleton.to_owned() + source)
        .replace("description = \"\"  # what the data is used for", "description = \"Used.\"  #")
        .replace("benefit = \"\"  # what the customer", "benefit = \"It helps.\"  #")
}

#[test]
fn an_exported_catalog_reads_back_with_every_property_as_it_was() {
    let catalog = example();
    let yaml = export(&catalog);
    assert_eq!(yaml, export(&catalog), "the export is deterministic");
    let imported = import(&yaml).expect("the export reads back");
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    let back = Catalog::parse(&filled(&imported.toml))
        .unwrap_or_else(|errors| panic!("{errors}\n{}", imported.toml));
    assert_eq!(back.brand().name, catalog.brand().name);
    assert_eq!(back.brand().contact, catalog.brand().contact);
    assert_eq!(back.brand().policy_url, catalog.brand().policy_url);
    let keys = |catalog: &Catalog| catalog.purposes().iter().map(|p| p.key.clone()).collect::<Vec<_>>();
    let mut expected = keys(&catalog);
    let mut got = keys(&back);
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(back.properties().len(), catalog.properties().len());
    for property in catalog.properties() {
        let read = back
            .properties()
            .iter()
            .find(|read| read.path == property.path)
            .unwrap_or_else(|| panic!("{} is missing", property.path));
        assert_eq!(read.category, property.category, "{}", property.path);
        assert_eq!(read.purposes, property.purposes, "{}", property.path);
        assert_eq!(read.retention, property.retention, "{}", property.path);
        assert_eq!(read.identifier, property.identifier, "{}", property.path);
        assert_eq!(read.sensitive, property.sensitive, "{}", property.path);
        assert_eq!(read.description, property.description, "{}", property.path);
    }
}

const FIDES_SYSTEM: &str = r#"
organization:
- fides_key: acme
  name: Acme Corp
  controller:
    name: Acme Corp
    email: dpo@acme.example
system:
- fides_key: crm
  name: CRM
  system_type: Service
  privacy_policy: https://acme.example/privacy
  privacy_declarations:
  - name: Profiles for recommendations
    data_use: personalize.profiling
    data_categories: [user.contact.email, user.behavior]
    data_subjects: [customer]
    retention_period: "365"
  - name: Newsletter
    data_use: marketing.communications.email
    data_categories: [user.contact.email]
    data_subjects: [customer]
dataset:
- fides_key: crm_db
  collections:
  - name: customer
    fields:
    - name: email
      data_categories: [user.contact.email]
      fides_meta:
        identity: email
    - name: notes
"#;

#[test]
fn a_fideslang_file_becomes_a_skeleton_whose_gaps_catalog_check_names_by_line() {
    let imported = import(FIDES_SYSTEM).expect("a fideslang file");
    assert!(
        imported.warnings.iter().any(|warning| warning.contains("personalize.profiling is deprecated")
            && warning.contains("personalize.content.profiling")),
        "{:?}",
        imported.warnings
    );
    assert!(imported.warnings.iter().any(|warning| warning.contains("customer.notes has no data category")));
    let toml = &imported.toml;
    assert!(toml.contains("[purposes.\"personalize.content.profiling\"]"), "{toml}");
    assert!(!toml.contains("\"personalize.profiling\""), "{toml}");
    assert!(
        toml.contains("name = \"Acme Corp\"") && toml.contains("contact = \"dpo@acme.example\""),
        "{toml}"
    );
    let errors = Catalog::parse(toml).expect_err("a skeleton is not a catalog yet");
    let line_of = |needle: &str| {
        toml.lines().position(|line| line.starts_with(needle)).map(|index| index + 1).expect(needle)
    };
    let at = |line: usize, words: &str| {
        errors.problems.iter().any(|problem| problem.line == line && problem.message.contains(words))
    };
    let rendered = errors.render("skeleton");
    assert!(at(line_of("benefit = \"\""), "benefit"), "{rendered}\n{toml}");
    assert!(at(line_of("[properties.\"customer.email\"]"), "must start with traits."), "{rendered}\n{toml}");
    assert!(at(line_of("[properties.\"user.behavior\"]"), "must start with traits."), "{rendered}\n{toml}");
    // The email field serves both declarations; the shorter retention of those that give one holds.
    assert!(toml.contains("purposes = [\"personalize.content.profiling\", \"marketing.communications.email\"]\nretention = \"1y\"\nidentifier = \"email\""), "{toml}");
}

#[test]
fn a_file_that_is_not_yaml_or_not_fideslang_is_refused_with_where_and_why() {
    match import("system:\n  - name: [unclosed\n") {
        Err(ImportError::Syntax { line, column, .. }) => assert!(line >= 2 && column >= 1, "{line}:{column}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(import("just: text\n"), Err(ImportError::Shape(_))));
}
