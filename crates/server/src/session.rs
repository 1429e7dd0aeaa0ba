//! What the web pages hand to browsers, authenticated without server-side state (so every instance
//! accepts them): the preference-center link a brand's backend issues, the session it turns into,
//! the brand console's session, and the CSRF token bound to each session. Each is a payload and an
//! HMAC under a key derived from the index root (`Vault::web_token_mac`), with a context per kind so
//! one can never pass for another, and an expiry.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tactful_vault::Vault;

/// The cookie holding a customer's preference-center session.
pub const ME_COOKIE: &str = "tactful_me";
/// The cookie holding a brand console session.
pub const CONSOLE_COOKIE: &str = "tactful_console";
/// The cookie naming a sign-in waiting for its one-time code.
pub const SIGN_IN_COOKIE: &str = "tactful_sign_in";
/// The cookie naming an erasure the person asked for, so they can follow it after their session
/// ended with their data.
pub const ERASURE_COOKIE: &str = "tactful_erasure";

/// Which kind of token: the MAC context, so a token of one kind never verifies as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A signed link to the preference center (in an email or on the brand's site).
    Link,
    /// A customer's session in the preference center.
    Me,
    /// A brand user's session in the console.
    Console,
    /// An erasure request a person may follow after their data (and session) are gone.
    Erasure,
    /// A sign-in waiting for the one-time code sent to the person (names the code's record).
    SignIn,
}

impl Kind {
    fn context(self) -> &'static str {
        match self {
            Kind::Link => "tactful/me-link",
            Kind::Me => "tactful/me-session",
            Kind::Console => "tactful/console-session",
            Kind::Erasure => "tactful/erasure",
            Kind::SignIn => "tactful/sign-in",
        }
    }
}

/// What a token says: who (a subject id, an API key id, or a request id) and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject (`sub_…`), API key id (`key_…`) or request (`req_…`) it stands for.
    #[serde(rename = "s")]
    pub who: String,
    /// Unix milliseconds after which it is refused.
    #[serde(rename = "x")]
    pub expires_at: i64,
    /// Random, so two tokens for the same person differ.
    #[serde(rename = "n")]
    pub nonce: String,
}

/// Why a token was refused. The reasons are logged, never shown apart: a page says only that the
/// link or session is no longer valid, whichever it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    BadSignature,
    Expired,
}

/// Issues a token of `kind` for `who`, valid until `expires_at`.
pub fn issue(vault: &Vault, kind: Kind, who: &str, expires_at: i64) -> String {
    let nonce: String = tactful_vault::new_subject_id().trim_start_matches("sub_").chars().take(16).collect();
    let claims = Claims { who: who.to_owned(), expires_at, nonce };
    let payload = serde_json::to_vec(&claims).unwrap_or_default();
    let tag = vault.web_token_mac(kind.context(), &payload);
    format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a token of `kind` and returns what it says, if it is authentic and not expired at `now`.
pub fn verify(vault: &Vault, kind: Kind, token: &str, now: i64) -> Result<Claims, Refused> {
    let (payload, tag) = token.trim().split_once('.').ok_or(Refused::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Refused::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| Refused::Malformed)?;
    if !vault.web_token_verify(kind.context(), &payload, &tag) {
        return Err(Refused::BadSignature);
    }
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| Refused::Malformed)?;
    if claims.expires_at <= now {
        return Err(Refused::Expired);
    }
    Ok(claims)
}

/// The CSRF token of a session: forms carry it, and a post without it (or with another session's)
/// is refused. Derived from the session token, so it needs no storage either.
pub fn csrf_token(vault: &Vault, session_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(vault.web_token_mac("tactful/csrf", session_token.as_bytes()))
}

/// Whether `token` is the CSRF token of `session_token` (constant-time).
pub fn csrf_valid(vault: &Vault, session_token: &str, token: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(token.trim())
        .is_ok_and(|tag| vault.web_token_verify("tactful/csrf", session_token.as_bytes(), &tag))
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly (scripts never see it), SameSite=Lax (not sent with another
/// site's posts; Strict would drop it on the redirect after a link clicked in an email), Secure
/// unless the server is reached over plain HTTP on a non-local address, for `max_age_seconds`
/// (0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age_seconds: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age_seconds.max(0)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tactful_vault::MasterKey;

    fn vault() -> Vault {
        let master = MasterKey::generate();
        let root = master.new_index_root();
        Vault::open(master, &root).unwrap()
    }

    #[test]
    fn a_token_verifies_for_its_kind_until_it_expires() {
        let vault = vault();
        let token = issue(&vault, Kind::Link, "sub_ada", 2_000);
        let claims = verify(&vault, Kind::Link, &token, 1_999).unwrap();
        assert_eq!(claims.who, "sub_ada");
        assert_eq!(verify(&vault, Kind::Link, &token, 2_000), Err(Refused::Expired));
        assert_eq!(
            verify(&vault, Kind::Me, &token, 1_000),
            Err(Refused::BadSignature),
            "a link is no session"
        );
        assert_ne!(issue(&vault, Kind::Link, "sub_ada", 2_000), token, "each token is new");
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let vault = vault();
        let token = issue(&vault, Kind::Me, "sub_ada", i64::MAX);
        let (payload, tag) = token.split_once('.').unwrap();
        // Someone else's subject id with the same tag.
        let forged = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let forged = String::from_utf8(forged).unwrap().replace("sub_ada", "sub_bob");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged));
        assert_eq!(verify(&vault, Kind::Me, &forged, 0), Err(Refused::BadSignature));
        for bad in ["", "x", "a.b", "....", &token[..token.len() - 2], "é.é"] {
            assert!(verify(&vault, Kind::Me, bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let vault = vault();
        let ada = issue(&vault, Kind::Me, "sub_ada", i64::MAX);
        let bob = issue(&vault, Kind::Me, "sub_bob", i64::MAX);
        let token = csrf_token(&vault, &ada);
        assert!(csrf_valid(&vault, &ada, &token));
        assert!(!csrf_valid(&vault, &bob, &token));
        assert!(!csrf_valid(&vault, &ada, ""));
        assert!(!csrf_valid(&vault, &ada, "not base64!"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; tactful_me=abc.def"));
        headers.append(header::COOKIE, HeaderValue::from_static("tactful_console=\"x.y\""));
        assert_eq!(cookie(&headers, ME_COOKIE), Some("abc.def"));
        assert_eq!(cookie(&headers, CONSOLE_COOKIE), Some("x.y"));
        assert_eq!(cookie(&headers, "missing"), None);
        let set = set_cookie(ME_COOKIE, "abc.def", 3600, true);
        let set = set.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Lax", "Secure", "Max-Age=3600", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
    }
}
