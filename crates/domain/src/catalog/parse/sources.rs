//! Reading the `[sources.*]` tables: the apps and SDKs that send events, each with a write key of
//! its own, whether that key is secret (a server) or public (a browser or an app, where what events
//! claim about who they are needs an identity token), the browser origins it may send from and its
//! default jurisdiction.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, Problem, S, check_key, in_file_order};
use crate::catalog::{Jurisdiction, Source, SourceId, SourceKind};
use crate::secret::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    name: Option<String>,
    write_key: S<String>,
    kind: Option<S<String>>,
    identity_secret: Option<S<String>>,
    #[serde(default)]
    trust_claims: Option<S<bool>>,
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    allowed_origins: Vec<S<String>>,
    default_jurisdiction: Option<S<String>>,
    #[serde(default)]
    allow_sensitive: bool,
}

/// The sources, and each one's id by write key.
pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawSource>,
    jurisdictions: &[Jurisdiction],
) -> (Vec<Source>, HashMap<String, SourceId>) {
    let mut sources = Vec::new();
    let mut source_by_write_key = HashMap::new();
    if raw.is_empty() {
        checker.problems.push(Problem {
            line: 0,
            column: 0,
            message: "no [sources.*] declared: nothing could send events".into(),
        });
    }
    for (key, raw) in in_file_order(raw) {
        check_key(checker, &key, "source");
        let id = SourceId(u16::try_from(sources.len()).unwrap_or(u16::MAX));
        let write_key = raw.write_key.get_ref().trim().to_owned();
        if write_key.len() < 8 {
            checker.at(raw.write_key.span(), "write_key must be at least 8 characters");
        } else if source_by_write_key.insert(write_key.clone(), id).is_some() {
            checker.at(raw.write_key.span(), "this write_key is already used by another source");
        }
        if let Some(jurisdiction) = &raw.default_jurisdiction
            && !jurisdictions.iter().any(|declared| &declared.key == jurisdiction.get_ref())
        {
            checker.at(
                jurisdiction.span(),
                format!(
                    "unknown jurisdiction {:?}: declare it under [jurisdictions]",
                    jurisdiction.get_ref()
                ),
            );
        }
        for origin in &raw.allowed_origins {
            check_origin(checker, origin);
        }
        let kind = source_kind(checker, &key, &raw);
        sources.push(Source {
            id,
            name: raw.name.unwrap_or_else(|| key.get_ref().clone()),
            key: key.into_inner(),
            write_key: Secret::new(write_key),
            kind,
            identity_secret: raw
                .identity_secret
                .map(|secret| Secret::new(secret.into_inner().trim().to_owned())),
            trust_claims: raw.trust_claims.is_some_and(|trust| *trust.get_ref()),
            strict: raw.strict,
            allowed_origins: raw.allowed_origins.into_iter().map(Spanned::into_inner).collect(),
            default_jurisdiction: raw.default_jurisdiction.map(Spanned::into_inner),
            allow_sensitive: raw.allow_sensitive,
        });
    }
    (sources, source_by_write_key)
}

/// Whether the source's key is secret or public, and what proves who its events are about.
fn source_kind(checker: &mut Checker<'_>, key: &S<String>, raw: &RawSource) -> SourceKind {
    let kind = match raw.kind.as_ref().map(|kind| (kind, kind.get_ref().as_str())) {
        Some((_, "server")) => SourceKind::Server,
        Some((_, "browser")) => SourceKind::Browser,
        Some((_, "mobile")) => SourceKind::Mobile,
        Some((kind, other)) => {
            checker.at(kind.span(), format!("kind {other:?} is not \"server\", \"browser\" or \"mobile\""));
            SourceKind::Browser
        }
        None => {
            checker.at(
                key.span(),
                "say where this source's write key lives: kind = \"server\" (secret, on the brand's servers) \
                 or \"browser\" / \"mobile\" (public: it ships in every page or app)",
            );
            SourceKind::Browser
        }
    };
    if let Some(secret) = &raw.identity_secret {
        if kind == SourceKind::Server {
            checker.at(
                secret.span(),
                "a server source needs no identity_secret: its write key is secret already",
            );
        } else if secret.get_ref().trim().len() < 16 {
            checker
                .at(secret.span(), "identity_secret must be at least 16 characters (a long random secret)");
        }
    }
    if let Some(trust) = &raw.trust_claims
        && *trust.get_ref()
    {
        if kind == SourceKind::Server {
            checker.at(
                trust.span(),
                "trust_claims is for browser and mobile sources; a server source is trusted already",
            );
        } else {
            checker.note(
                trust.span(),
                format!(
                    "source {:?} trusts claims: anyone holding its public write key can send a userId or email \
                     and be linked to that person, see their recommendations and grant consent in their name",
                    key.get_ref()
                ),
            );
        }
    }
    kind
}

fn check_origin(checker: &mut Checker<'_>, origin: &S<String>) {
    let origin_text = origin.get_ref();
    let well_formed = origin_text == "*"
        || ((origin_text.starts_with("http://") || origin_text.starts_with("https://"))
            && !origin_text.trim_end_matches('/').contains(|c: char| c.is_whitespace())
            && origin_text.matches('/').count() == 2);
    if !well_formed {
        checker.at(
            origin.span(),
            format!("{origin_text:?} is not an origin: write it as \"https://shop.example\" or \"*\""),
        );
    }
}
