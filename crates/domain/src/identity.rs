//! Identity: which identifiers point to a subject, how they are normalized, and the rules that decide
//! which subject an event belongs to and when two subjects are the same person. The stores execute
//! these decisions; they do not make them, so every backend links people the same way.

use std::fmt;
use std::str::FromStr;

/// The kind of an identifier. The blind index of an identifier covers its kind, so the same text
/// as an email and as a userId are different identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierKind {
    UserId,
    AnonymousId,
    Email,
    Phone,
    /// A brand-specific identity type declared in the catalog (`loyalty_card`, …).
    Custom(String),
}

impl IdentifierKind {
    pub fn as_str(&self) -> &str {
        match self {
            IdentifierKind::UserId => "user_id",
            IdentifierKind::AnonymousId => "anonymous_id",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Custom(name) => name,
        }
    }

    /// Normalizes an identifier so that trivially different spellings find the same subject.
    pub fn normalize(&self, raw: &str) -> Result<String, IdentifierError> {
        use unicode_normalization::UnicodeNormalization as _;
        // Emails and phone numbers are people's spellings: composed or decomposed accents and
        // full-width letters or digits are the same address (NFKC). Ids are the brand's, kept exact.
        let compatible: String;
        let raw = match self {
            IdentifierKind::Email | IdentifierKind::Phone => {
                compatible = raw.nfkc().collect();
                compatible.as_str()
            }
            _ => raw,
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(IdentifierError::Empty);
        }
        if trimmed.len() > MAX_IDENTIFIER_BYTES {
            return Err(IdentifierError::TooLong);
        }
        match self {
            // Segment ids are case-sensitive and opaque: keep them exactly (but trimmed).
            IdentifierKind::UserId | IdentifierKind::AnonymousId | IdentifierKind::Custom(_) => {
                Ok(trimmed.to_owned())
            }
            IdentifierKind::Email => {
                let lowered = trimmed.to_lowercase();
                match lowered.split_once('@') {
                    Some((local, domain))
                        if !local.is_empty() && domain.contains('.') && !domain.contains('@') =>
                    {
                        Ok(lowered)
                    }
                    _ => Err(IdentifierError::Malformed(
                        "an email address needs a local part, '@' and a domain",
                    )),
                }
            }
            IdentifierKind::Phone => {
                let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
                let allowed = trimmed.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
                if !allowed || digits.len() < 5 || digits.len() > 15 {
                    return Err(IdentifierError::Malformed("a phone number has 5 to 15 digits"));
                }
                let plus = if trimmed.starts_with('+') { "+" } else { "" };
                Ok(format!("{plus}{digits}"))
            }
        }
    }
}

/// The identity token a brand's backend gives a signed-in person's browser or app, proving that
/// events from that device are theirs: hex HMAC-SHA256 of the userId under the source's identity
/// secret (as Intercom's and Zendesk's identity verification do). Only the brand's backend, which
/// holds the secret, can make one; it is the same for every event of that person.
pub fn token(secret: &str, user_id: &str) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(user_id.as_bytes());
    crate::encoding::hex(&mac.finalize().into_bytes())
}

/// Whether `token` is the identity token of `user_id` under `secret` (compared in constant time).
pub fn token_valid(secret: &str, user_id: &str, token: &str) -> bool {
    use hmac::{KeyInit as _, Mac as _};
    let token = token.trim();
    if token.len() != 64 || !token.is_ascii() {
        return false;
    }
    let Some(tag) = crate::encoding::unhex(token) else { return false };
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(user_id.as_bytes());
    mac.verify_slice(&tag).is_ok()
}

/// Identifiers longer than this are refused rather than indexed.
pub const MAX_IDENTIFIER_BYTES: usize = 512;

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is longer than {MAX_IDENTIFIER_BYTES} bytes")]
    TooLong,
    #[error("{0}")]
    Malformed(&'static str),
    #[error(
        "identity type {0:?} must be \"email\", \"phone\" or a name of lowercase letters, digits and '_' (at most 32)"
    )]
    UnknownKind(String),
}

impl FromStr for IdentifierKind {
    type Err = IdentifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "user_id" => IdentifierKind::UserId,
            "anonymous_id" => IdentifierKind::AnonymousId,
            "email" => IdentifierKind::Email,
            "phone" => IdentifierKind::Phone,
            custom
                if !custom.is_empty()
                    && custom.len() <= 32
                    && custom.starts_with(|c: char| c.is_ascii_lowercase())
                    && custom.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') =>
            {
                IdentifierKind::Custom(custom.to_owned())
            }
            other => return Err(IdentifierError::UnknownKind(other.to_owned())),
        })
    }
}

/// What the store currently knows about one identifier of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<S> {
    pub subject: S,
    /// Whether that subject is known, i.e. has a userId.
    pub known: bool,
}

/// One identifier of an incoming event and its current binding, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<S> {
    pub kind: IdentifierKind,
    pub bound: Option<Binding<S>>,
}

/// Where an event goes: an existing subject or a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<S> {
    Existing(S),
    New,
}

/// What the store must do so the event's identifiers point where the rules say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<S> {
    pub target: Target<S>,
    /// Claims (by index) to bind to the target: unbound ones, and anonymous ids moving device.
    pub bind: Vec<usize>,
    /// Subjects to merge into the target: their identifiers move to it and their history follows.
    pub merge: Vec<S>,
}

/// Decides which subject an event with these identifiers belongs to.
///
/// Rules, in order:
/// - With a userId, the event belongs to the userId's subject (a new one if unknown). Identifiers
///   bound to *anonymous* subjects (no userId) merge into it: that is someone logging in. A subject
///   that already has another userId is never merged implicitly (a shared device); an anonymousId
///   seen there moves to the new user, because the device is now theirs.
/// - Without a userId, the event belongs to the subject of its strongest bound identifier (declared
///   identifiers such as email before the anonymousId); nothing merges without a userId.
/// - Unbound identifiers bind to the target.
pub fn plan<S: Clone + PartialEq>(claims: &[Claim<S>]) -> Plan<S> {
    let user = claims.iter().position(|claim| claim.kind == IdentifierKind::UserId);
    let mut bind = Vec::new();
    let mut merge: Vec<S> = Vec::new();

    let target = match user {
        Some(user_index) => {
            let mut target = claims[user_index].bound.as_ref().map(|bound| bound.subject.clone());
            if target.is_none() {
                // Logging in for the first time: adopt the first anonymous subject instead of
                // creating a new one and merging it.
                target = claims
                    .iter()
                    .filter_map(|claim| claim.bound.as_ref())
                    .find(|bound| !bound.known)
                    .map(|bound| bound.subject.clone());
                bind.push(user_index);
            }
            for (index, claim) in claims.iter().enumerate() {
                if index == user_index {
                    continue;
                }
                match &claim.bound {
                    None => bind.push(index),
                    Some(bound) if target.as_ref() == Some(&bound.subject) => {}
                    Some(bound) if !bound.known => {
                        if !merge.contains(&bound.subject) {
                            merge.push(bound.subject.clone());
                        }
                    }
                    Some(_) if claim.kind == IdentifierKind::AnonymousId => bind.push(index),
                    Some(_) => {}
                }
            }
            target
        }
        None => {
            let strongest = claims
                .iter()
                .filter(|claim| claim.bound.is_some())
                .min_by_key(|claim| claim.kind == IdentifierKind::AnonymousId)
                .and_then(|claim| claim.bound.as_ref())
                .map(|bound| bound.subject.clone());
            for (index, claim) in claims.iter().enumerate() {
                if claim.bound.is_none() {
                    bind.push(index);
                }
            }
            strongest
        }
    };
    bind.sort_unstable();
    Plan { target: target.map_or(Target::New, Target::Existing), bind, merge }
}

/// Decides an explicit `alias`: the brand says `previous` and `user` are the same person, so the
/// previous subject merges into the user's even when both are known. `previous` claims are the
/// previousId looked up both as a userId and as an anonymousId; when neither is bound, both are
/// bound, so later events under either kind find the person.
pub fn plan_alias<S: Clone + PartialEq>(
    user: Option<Binding<S>>,
    previous: &[Option<Binding<S>>],
) -> AliasPlan<S> {
    let previous_subjects: Vec<S> = previous.iter().flatten().map(|bound| bound.subject.clone()).collect();
    match user {
        Some(user) => AliasPlan {
            bind_user: false,
            bind_previous: previous_subjects.is_empty(),
            merge: dedup(previous_subjects.into_iter().filter(|subject| *subject != user.subject)),
            target: Target::Existing(user.subject),
        },
        None => match previous_subjects.first().cloned() {
            Some(first) => AliasPlan {
                bind_user: true,
                bind_previous: false,
                merge: dedup(previous_subjects.into_iter().filter(|subject| *subject != first)),
                target: Target::Existing(first),
            },
            None => {
                AliasPlan { target: Target::New, bind_user: true, bind_previous: true, merge: Vec::new() }
            }
        },
    }
}

fn dedup<S: PartialEq>(subjects: impl Iterator<Item = S>) -> Vec<S> {
    let mut unique = Vec::new();
    for subject in subjects {
        if !unique.contains(&subject) {
            unique.push(subject);
        }
    }
    unique
}

/// What the store must do for an `alias` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasPlan<S> {
    pub target: Target<S>,
    /// Bind the userId to the target.
    pub bind_user: bool,
    /// Bind the previousId (as userId and anonymousId) to the target.
    pub bind_previous: bool,
    pub merge: Vec<S>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(kind: &str, bound: Option<(u32, bool)>) -> Claim<u32> {
        Claim { kind: kind.parse().unwrap(), bound: bound.map(|(subject, known)| Binding { subject, known }) }
    }

    #[test]
    fn an_identity_token_proves_one_user_id_under_one_secret() {
        let token = token("idsec_0123456789abcdef", "u-42");
        assert_eq!(token.len(), 64);
        assert!(token_valid("idsec_0123456789abcdef", "u-42", &token));
        assert!(token_valid("idsec_0123456789abcdef", "u-42", &token.to_uppercase()));
        assert!(!token_valid("idsec_0123456789abcdef", "u-43", &token), "another person's");
        assert!(!token_valid("another-secret-0123456", "u-42", &token), "another source's");
        let (short, long) = (token[..62].to_owned(), format!("{token}00"));
        for forged in ["", "00", &short, &long, &"zz".repeat(32), &"é".repeat(32)] {
            assert!(!token_valid("idsec_0123456789abcdef", "u-42", forged), "{forged:?}");
        }
    }

    #[test]
    fn normalizes_by_kind() {
        let check = |kind: &str, raw: &str, expected: Result<&str, ()>| {
            let kind: IdentifierKind = kind.parse().unwrap();
            assert_eq!(kind.normalize(raw).map_err(|_| ()), expected.map(str::to_owned), "{kind} {raw:?}");
        };
        check("email", "  Ada@Example.COM ", Ok("ada@example.com"));
        // One address, however its accents are encoded or its letters are typed.
        check("email", "Ren\u{e9}e@example.com", Ok("ren\u{e9}e@example.com"));
        check("email", "Rene\u{301}e@example.com", Ok("ren\u{e9}e@example.com"));
        check("email", "\u{ff21}da@example.com", Ok("ada@example.com"));
        check("phone", "\u{ff0b}1 555 010 9999", Ok("+15550109999"));
        check("email", "not-an-email", Err(()));
        check("email", "@example.com", Err(()));
        check("phone", "+1 (555) 010-9999", Ok("+15550109999"));
        check("phone", "12", Err(()));
        check("phone", "call me", Err(()));
        check("user_id", " User-42 ", Ok("User-42"));
        check("user_id", "   ", Err(()));
        check("loyalty_card", "LC-1", Ok("LC-1"));
        assert!("Bad Kind".parse::<IdentifierKind>().is_err());
    }

    #[test]
    fn first_sight_creates_a_subject_and_binds_everything() {
        let plan = plan(&[claim("anonymous_id", None), claim("email", None)]);
        assert_eq!(plan, Plan { target: Target::New, bind: vec![0, 1], merge: vec![] });
    }

    #[test]
    fn logging_in_adopts_the_anonymous_subject() {
        let plan = plan(&[claim("user_id", None), claim("anonymous_id", Some((7, false)))]);
        assert_eq!(plan, Plan { target: Target::Existing(7), bind: vec![0], merge: vec![] });
    }

    #[test]
    fn logging_in_to_a_known_account_merges_the_anonymous_history() {
        let plan = plan(&[claim("user_id", Some((1, true))), claim("anonymous_id", Some((7, false)))]);
        assert_eq!(plan, Plan { target: Target::Existing(1), bind: vec![], merge: vec![7] });
    }

    #[test]
    fn a_shared_device_never_merges_two_known_people() {
        let plan = plan(&[claim("user_id", Some((2, true))), claim("anonymous_id", Some((1, true)))]);
        assert_eq!(plan, Plan { target: Target::Existing(2), bind: vec![1], merge: vec![] });
        // A new user on a device someone else logged in on: the device moves, nobody merges.
        let plan = super::plan(&[claim("user_id", None), claim("anonymous_id", Some((1, true)))]);
        assert_eq!(plan, Plan { target: Target::New, bind: vec![0, 1], merge: vec![] });
    }

    #[test]
    fn an_email_owned_by_another_known_person_stays_theirs() {
        let plan = plan(&[claim("user_id", Some((2, true))), claim("email", Some((1, true)))]);
        assert_eq!(plan, Plan { target: Target::Existing(2), bind: vec![], merge: vec![] });
    }

    #[test]
    fn without_a_user_id_the_strongest_identifier_wins_and_nothing_merges() {
        let plan = plan(&[claim("anonymous_id", Some((5, false))), claim("email", Some((9, true)))]);
        assert_eq!(plan, Plan { target: Target::Existing(9), bind: vec![], merge: vec![] });
        let plan = super::plan(&[claim("anonymous_id", Some((5, false))), claim("email", None)]);
        assert_eq!(plan, Plan { target: Target::Existing(5), bind: vec![1], merge: vec![] });
    }

    #[test]
    fn alias_merges_explicitly() {
        let known = |subject| Some(Binding { subject, known: true });
        assert_eq!(
            plan_alias(known(1), &[known(2), None]),
            AliasPlan { target: Target::Existing(1), bind_user: false, bind_previous: false, merge: vec![2] }
        );
        assert_eq!(
            plan_alias(None, &[None, known(3)]),
            AliasPlan { target: Target::Existing(3), bind_user: true, bind_previous: false, merge: vec![] }
        );
        assert_eq!(
            plan_alias::<u32>(None, &[None, None]),
            AliasPlan { target: Target::New, bind_user: true, bind_previous: true, merge: vec![] }
        );
        assert_eq!(
            plan_alias(known(1), &[known(1), None]),
            AliasPlan { target: Target::Existing(1), bind_user: false, bind_previous: false, merge: vec![] }
        );
    }
}
