//! The built-in fideslang-compatible taxonomy: which data categories and data uses (purposes) exist,
//! how they nest, and which categories are sensitive, so catalogs can be checked and exchanged.

mod deprecated;
mod fideslang_data;

use std::collections::HashMap;
use std::sync::OnceLock;

/// One taxonomy entry (a data category or a data use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
}

/// Categories that law treats as special (GDPR art. 9 and 10, CPRA "sensitive personal information",
/// COPPA) or that the product treats as sensitive because inference from them is creepy (precise
/// location). A key is sensitive when it is one of these or lies under one of them. This marking is
/// Tactful's own; fideslang does not carry it.
const SENSITIVE_CATEGORY_ROOTS: &[&str] = &[
    "user.authorization.biometric",
    "user.authorization.biometrics",
    "user.authorization.credentials",
    "user.biometric",
    "user.biometrics",
    "user.children",
    "user.childrens",
    "user.criminal_history",
    "user.demographic.citizenship_or_immigration_status",
    "user.demographic.philosophical_belief",
    "user.demographic.political_opinion",
    "user.demographic.race_ethnicity",
    "user.demographic.religious_belief",
    "user.demographic.sexual_orientation",
    "user.demographic.union_membership",
    "user.financial.bank_account",
    "user.government_id",
    "user.health",
    "user.health_and_medical",
    "user.location.precise",
];

/// The taxonomy: data categories and data uses, looked up by key.
#[derive(Debug)]
pub struct Taxonomy {
    categories: HashMap<&'static str, Entry>,
    uses: HashMap<&'static str, Entry>,
}

impl Taxonomy {
    /// The built-in taxonomy, built once.
    pub fn builtin() -> &'static Taxonomy {
        static TAXONOMY: OnceLock<Taxonomy> = OnceLock::new();
        TAXONOMY.get_or_init(|| Taxonomy {
            categories: index(fideslang_data::DATA_CATEGORIES),
            uses: index(fideslang_data::DATA_USES),
        })
    }

    pub fn category(&self, key: &str) -> Option<&Entry> {
        self.categories.get(key)
    }

    pub fn data_use(&self, key: &str) -> Option<&Entry> {
        self.uses.get(key)
    }

    /// Every data category, parents before children.
    pub fn categories(&self) -> impl Iterator<Item = Entry> {
        fideslang_data::DATA_CATEGORIES.iter().map(|&(key, name, description)| Entry {
            key,
            name,
            description,
        })
    }

    /// Every data use, parents before children.
    pub fn data_uses(&self) -> impl Iterator<Item = Entry> {
        fideslang_data::DATA_USES.iter().map(|&(key, name, description)| Entry { key, name, description })
    }

    /// Whether a data category is sensitive (special category data).
    /// A data category's name in plain words, for the pages customers read: the taxonomy's name
    /// in sentence case and without fideslang's "User" prefix ("User Contact Email" → "Contact
    /// email", "Purchase History" → "Purchase history"); a key the taxonomy does not know is named
    /// by its last segment ("user.custom.shoe_size" → "Shoe size").
    pub fn plain_category_name(&self, key: &str) -> String {
        let name = match self.category(key) {
            Some(entry) => entry.name.to_owned(),
            None => key.rsplit('.').next().unwrap_or(key).replace('_', " "),
        };
        let name = ["User's ", "User "]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .filter(|rest| !rest.is_empty() && *rest != "Data")
            .unwrap_or(&name);
        sentence_case(name)
    }

    pub fn is_sensitive_category(&self, key: &str) -> bool {
        SENSITIVE_CATEGORY_ROOTS.iter().any(|root| covers(root, key))
    }

    /// The closest known category key to a misspelt one, for "did you mean" hints.
    pub fn suggest_category(&self, key: &str) -> Option<&'static str> {
        suggest(key, self.categories.keys().copied())
    }

    /// The closest known data-use key to a misspelt one.
    pub fn suggest_data_use(&self, key: &str) -> Option<&'static str> {
        suggest(key, self.uses.keys().copied())
    }
}

/// The first word capitalized, the others in lower case, acronyms (`IP`, `ID`, `URL`) kept.
fn sentence_case(name: &str) -> String {
    let mut plain = String::with_capacity(name.len());
    for (index, word) in name.split_whitespace().enumerate() {
        if index > 0 {
            plain.push(' ');
        }
        let acronym =
            word.chars().filter(|c| c.is_alphabetic()).count() > 1 && !word.chars().any(char::is_lowercase);
        if acronym {
            plain.push_str(word);
        } else if index == 0 {
            let mut chars = word.chars();
            plain.extend(chars.next().into_iter().flat_map(char::to_uppercase));
            plain.push_str(&chars.as_str().to_lowercase());
        } else {
            plain.push_str(&word.to_lowercase());
        }
    }
    plain
}

/// A key fideslang has deprecated, and the key to use instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecation {
    pub replaced_by: &'static str,
    /// The fideslang version that deprecated it.
    pub since: &'static str,
}

/// Whether fideslang deprecated a data category or data use key, and what replaced it.
pub fn deprecated(key: &str) -> Option<Deprecation> {
    deprecated::DEPRECATED
        .iter()
        .find(|(known, _, _)| *known == key)
        .map(|&(_, replaced_by, since)| Deprecation { replaced_by, since })
}

fn index(entries: &'static [(&'static str, &'static str, &'static str)]) -> HashMap<&'static str, Entry> {
    entries.iter().map(|&(key, name, description)| (key, Entry { key, name, description })).collect()
}

/// Whether taxonomy key `parent` is `child` or one of its ancestors (`user.contact` covers
/// `user.contact.email`, not `user.contactless`). Children inherit from their parents.
pub fn covers(parent: &str, child: &str) -> bool {
    child == parent || (child.starts_with(parent) && child.as_bytes().get(parent.len()) == Some(&b'.'))
}

/// The candidate closest by edit distance, when it is close enough to be a plausible typo.
pub(crate) fn suggest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (key.len() / 4).max(2);
    candidates
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_its_parent_before_it() {
        for table in [fideslang_data::DATA_CATEGORIES, fideslang_data::DATA_USES] {
            let mut seen = std::collections::HashSet::new();
            for &(key, name, _) in table {
                assert!(!name.is_empty(), "{key} has no name");
                if let Some((parent, _)) = key.rsplit_once('.') {
                    assert!(seen.contains(parent), "{key} appears before its parent {parent}");
                }
                assert!(seen.insert(key), "{key} appears twice");
            }
        }
    }

    #[test]
    fn sensitive_roots_exist_in_the_taxonomy() {
        let taxonomy = Taxonomy::builtin();
        for root in SENSITIVE_CATEGORY_ROOTS {
            assert!(taxonomy.category(root).is_some(), "{root} is not a fideslang category");
        }
    }

    #[test]
    fn sensitivity_follows_the_hierarchy() {
        let taxonomy = Taxonomy::builtin();
        assert!(taxonomy.is_sensitive_category("user.health_and_medical"));
        assert!(taxonomy.is_sensitive_category("user.location.precise"));
        assert!(!taxonomy.is_sensitive_category("user.location.imprecise"));
        assert!(!taxonomy.is_sensitive_category("user.contact.email"));
    }

    #[test]
    fn category_names_for_customers_are_plain_words() {
        let taxonomy = Taxonomy::builtin();
        let check =
            |key: &str, expected: &str| assert_eq!(taxonomy.plain_category_name(key), expected, "{key}");
        check("user.behavior.purchase_history", "Purchase history");
        check("user.contact.email", "Contact email");
        check("user.device.ip_address", "IP address");
        check("user.unique_id", "Unique ID");
        check("user", "User data");
        check("user.custom.shoe_size", "Shoe size");
    }

    #[test]
    fn deprecated_keys_and_their_replacements_are_in_the_taxonomy() {
        let taxonomy = Taxonomy::builtin();
        for &(key, replaced_by, _) in deprecated::DEPRECATED {
            let known = |key| taxonomy.category(key).is_some() || taxonomy.data_use(key).is_some();
            assert!(known(key), "{key} is not a fideslang key");
            assert!(
                known(replaced_by) && deprecated(replaced_by).is_none(),
                "{replaced_by} is no replacement"
            );
        }
        assert_eq!(
            deprecated("personalize.profiling").map(|d| d.replaced_by),
            Some("personalize.content.profiling")
        );
        assert_eq!(deprecated("personalize.content"), None);
    }

    #[test]
    fn covers_respects_segment_boundaries() {
        assert!(covers("user.contact", "user.contact.email"));
        assert!(covers("user.contact", "user.contact"));
        assert!(!covers("user.contact", "user.contactless"));
        assert!(!covers("user.contact.email", "user.contact"));
    }

    #[test]
    fn suggests_close_keys_only() {
        let taxonomy = Taxonomy::builtin();
        assert_eq!(taxonomy.suggest_category("user.contact.emial"), Some("user.contact.email"));
        assert_eq!(taxonomy.suggest_category("completely.unrelated.thing"), None);
    }
}
