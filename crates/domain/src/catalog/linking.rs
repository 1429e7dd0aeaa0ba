//! The catalog's merge rules (`[identity]`): which identifier kinds link a person's records and
//! devices, from which sources, and how many of a kind one person may hold. A link that would break
//! a rule is refused and counted, never made silently.

use std::collections::BTreeMap;

use crate::identity::IdentifierKind;

/// How identifiers link people, as the catalog's `[identity]` section states it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linking {
    /// The kinds that link, beyond userId and anonymousId (which always do); `None`: every declared
    /// identifier kind.
    pub link: Option<Vec<IdentifierKind>>,
    /// Kinds that link only when they come from these sources (by key).
    pub link_from: BTreeMap<IdentifierKind, Vec<String>>,
    /// The most identifiers of a kind one person (a family) may hold.
    pub max_per_person: BTreeMap<IdentifierKind, u32>,
}

impl Linking {
    /// Whether an identifier of `kind` arriving from source `source` links people (is looked up
    /// and bound), rather than being kept as data only.
    pub fn links(&self, kind: &IdentifierKind, source: &str) -> bool {
        let linking_kind = matches!(kind, IdentifierKind::UserId | IdentifierKind::AnonymousId)
            || self.link.as_ref().is_none_or(|kinds| kinds.contains(kind));
        linking_kind && self.link_from.get(kind).is_none_or(|sources| sources.iter().any(|s| s == source))
    }

    /// The most identifiers of `kind` one person may hold, if limited.
    pub fn limit(&self, kind: &IdentifierKind) -> Option<u32> {
        self.max_per_person.get(kind).copied()
    }

    /// Whether any kind is limited (so the store counts what families hold).
    pub fn limits_anything(&self) -> bool {
        !self.max_per_person.is_empty()
    }

    /// Whether a family holding `held` identifiers per kind may also hold `more` (a bind of one, or
    /// a whole family merging in): refused if any kind would pass its limit.
    pub fn allows(
        &self,
        held: &BTreeMap<String, u32>,
        more: &BTreeMap<String, u32>,
    ) -> Result<(), IdentifierKind> {
        for (kind, limit) in &self.max_per_person {
            let after =
                held.get(kind.as_str()).copied().unwrap_or(0) + more.get(kind.as_str()).copied().unwrap_or(0);
            if more.get(kind.as_str()).copied().unwrap_or(0) > 0 && after > *limit {
                return Err(kind.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(kind, n)| ((*kind).to_owned(), *n)).collect()
    }

    #[test]
    fn links_follow_the_kinds_and_sources_the_catalog_names() {
        let rules = Linking {
            link: Some(vec![IdentifierKind::Email]),
            link_from: BTreeMap::from([(IdentifierKind::Email, vec!["backend".to_owned()])]),
            max_per_person: BTreeMap::new(),
        };
        assert!(rules.links(&IdentifierKind::UserId, "web"), "userIds always link");
        assert!(rules.links(&IdentifierKind::Email, "backend"));
        assert!(!rules.links(&IdentifierKind::Email, "web"), "not from that source");
        assert!(!rules.links(&IdentifierKind::Phone, "backend"), "not a linking kind");
        assert!(Linking::default().links(&IdentifierKind::Phone, "web"), "by default every kind links");
    }

    #[test]
    fn a_limit_refuses_only_what_would_pass_it() {
        let rules = Linking {
            max_per_person: BTreeMap::from([(IdentifierKind::Email, 2), (IdentifierKind::UserId, 1)]),
            ..Linking::default()
        };
        assert!(rules.allows(&counts(&[("email", 1)]), &counts(&[("email", 1)])).is_ok());
        assert_eq!(
            rules.allows(&counts(&[("email", 2)]), &counts(&[("email", 1)])),
            Err(IdentifierKind::Email)
        );
        assert_eq!(
            rules.allows(&counts(&[("user_id", 1)]), &counts(&[("user_id", 1), ("anonymous_id", 3)])),
            Err(IdentifierKind::UserId),
            "two userIds make two people"
        );
        assert!(
            rules.allows(&counts(&[("email", 5)]), &counts(&[("anonymous_id", 1)])).is_ok(),
            "only what is added counts"
        );
    }
}
