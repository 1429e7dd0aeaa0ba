//! Item categories (the topics people say they like) in the one spelling every comparison uses, so
//! "Pregnancy", " pregnancy " and "pregnancy" are one topic for the sensitivity rules and interests.

/// An item category as Tactful compares it: trimmed, in lower case, inner runs of whitespace
/// collapsed to one space. Every door a category name comes through (the catalog's sensitive
/// categories, placements and message rules, items, declared interests, request filters) applies
/// it, so a spelling can never slip past a rule.
pub fn normalize_category(name: &str) -> String {
    let mut normal = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !normal.is_empty() {
            normal.push(' ');
        }
        normal.push_str(&word.to_lowercase());
    }
    normal
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::normalize_category;

    #[test]
    fn spellings_of_one_category_are_one() {
        let check =
            |input: &str, expected: &str| assert_eq!(normalize_category(input), expected, "{input:?}");
        check("Pregnancy", "pregnancy");
        check("  pregnancy\t", "pregnancy");
        check("Trail   Running", "trail running");
        check("trail\u{a0}\nrunning ", "trail running");
        check("ÉTÉ", "été");
        check("   ", "");
    }

    proptest! {
        /// Normalizing twice changes nothing, and no spelling keeps an edge or a double space.
        #[test]
        fn normalizing_is_idempotent(name in "\\PC{0,24}") {
            let once = normalize_category(&name);
            prop_assert_eq!(normalize_category(&once), once.clone());
            prop_assert_eq!(once.trim(), once.as_str());
            prop_assert!(!once.contains("  "));
        }
    }
}
