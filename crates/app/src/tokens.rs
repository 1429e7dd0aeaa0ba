//! The tokens people and brand users hold: the preference-center link a brand's backend issues, the
//! session it turns into, the brand console's session, and the CSRF token bound to each session.
//! Each is a payload and an HMAC under a key derived from the index root (`Vault::web_token_mac`),
//! with a context per kind so one can never pass for another, and an expiry. Links and sessions
//! also carry a random id recorded in the store and checked on every request, so signing out ends
//! a session on every instance and a link opens once. How browsers carry them (cookies) is the
//! server's business.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tactful_store::{WebSession, WebSessionKind};
use tactful_vault::Vault;

use crate::App;
use crate::error::{AppError, ErrorCode};

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

    /// How the store records tokens of this kind; `None` for the kinds that need no record (an
    /// erasure being followed, a sign-in naming its one-time code's own record).
    fn recorded(self) -> Option<WebSessionKind> {
        match self {
            Kind::Link => Some(WebSessionKind::Link),
            Kind::Me => Some(WebSessionKind::Me),
            Kind::Console => Some(WebSessionKind::Console),
            Kind::Erasure | Kind::SignIn => None,
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
    /// 128 random bits: two tokens for the same person differ, and the store knows a link or
    /// session by it. Tokens without one (issued before they were recorded) are refused.
    #[serde(rename = "i")]
    pub id: String,
}

/// Why a token was refused. The reasons are logged, never shown apart: a page says only that the
/// link or session is no longer valid, whichever it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    BadSignature,
    Expired,
}

/// Claims for `who` until `expires_at`, with a new random id (128 bits, base32).
fn claims(who: &str, expires_at: i64) -> Claims {
    let id = tactful_vault::new_subject_id().trim_start_matches("sub_").to_owned();
    Claims { who: who.to_owned(), expires_at, id }
}

fn sign(vault: &Vault, kind: Kind, claims: &Claims) -> String {
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let tag = vault.web_token_mac(kind.context(), &payload);
    format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
}

/// Issues a token of `kind` for `who`, valid until `expires_at`. A link or session issued this way
/// is not recorded, so [`holder`] refuses it: those are issued with [`issue_recorded`].
pub fn issue(vault: &Vault, kind: Kind, who: &str, expires_at: i64) -> String {
    sign(vault, kind, &claims(who, expires_at))
}

/// What the store records of a link or session.
fn record(kind: WebSessionKind, claims: &Claims, now: i64) -> WebSession {
    WebSession {
        id: claims.id.clone(),
        kind,
        holder: claims.who.clone(),
        created_at: now,
        expires_at: claims.expires_at,
    }
}

/// Issues a token of `kind` for `who`, valid until `expires_at`, recording links and sessions in
/// the store (so they can be ended).
pub async fn issue_recorded(app: &App, kind: Kind, who: &str, expires_at: i64) -> Result<String, AppError> {
    let claims = claims(who, expires_at);
    if let Some(recorded) = kind.recorded() {
        app.store.create_web_session(record(recorded, &claims, app.now())).await?;
    }
    Ok(sign(&app.vault, kind, &claims))
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
/// is refused. Derived from the session token, so it needs no storage of its own.
pub fn csrf_token(vault: &Vault, session_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(vault.web_token_mac("tactful/csrf", session_token.as_bytes()))
}

/// Whether `token` is the CSRF token of `session_token` (constant-time).
pub fn csrf_valid(vault: &Vault, session_token: &str, token: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(token.trim())
        .is_ok_and(|tag| vault.web_token_verify("tactful/csrf", session_token.as_bytes(), &tag))
}

/// Issues a signed link to a person's preference center, valid for the configured minutes, and
/// records who issued it in the person's access log. Returns the link and when it expires.
pub async fn issue_link(app: &App, subject: &str, actor: Option<&str>) -> Result<(String, i64), AppError> {
    let found =
        app.store.subject_state(subject).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownSubject))?;
    let now = app.now();
    let expires_at = now + app.web.link_ttl_ms;
    let token = issue_recorded(app, Kind::Link, &found.subject, expires_at).await?;
    let entry = crate::preferences::audit(app, &found.subject, "link_issued", actor);
    app.store.audit_append(vec![entry], now).await?;
    Ok((format!("{}/me?t={token}", app.web.public_url), expires_at))
}

/// A link to the preference center of the person `reference` names, for a brand system whose role
/// may issue links (the link shows the person everything held about them, so whoever holds it sees
/// that too). Returns the person's id, the link and when it expires.
pub async fn link_for(
    app: &App,
    caller: &crate::Caller,
    reference: &str,
) -> Result<(String, String, i64), AppError> {
    caller.require(tactful_domain::catalog::Capability::IssueLinks)?;
    let subject = crate::subjects::find(app, reference).await?;
    let (url, expires_at) = issue_link(app, &subject, Some(&caller.key)).await?;
    Ok((subject, url, expires_at))
}

/// A preference-center session: its token and the person it is for.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub subject: String,
    pub expires_at: i64,
}

/// Exchanges a signed link for a session, recording the sign-in in the person's access log. A link
/// opens once (on whichever instance is first); an expired, altered, unknown or opened link gets the
/// same answer, whoever it was for.
pub async fn open_link(app: &App, link: &str) -> Result<Session, AppError> {
    let now = app.now();
    let invalid = || AppError::new(ErrorCode::InvalidLink);
    let link = verify(&app.vault, Kind::Link, link, now).map_err(|_| invalid())?;
    let found = app.store.subject_state(&link.who).await?.ok_or_else(invalid)?;
    let session = claims(&found.subject, now + app.web.session_ttl_ms);
    let entry = crate::preferences::audit(app, &found.subject, "signed_in", None);
    let opened = app
        .store
        .open_web_link(&link.id, record(WebSessionKind::Me, &session, now), vec![entry], now)
        .await?;
    if !opened {
        return Err(invalid());
    }
    Ok(Session {
        token: sign(&app.vault, Kind::Me, &session),
        subject: session.who,
        expires_at: session.expires_at,
    })
}

/// A new preference-center session for a person, recorded.
pub async fn session_for(app: &App, subject: &str) -> Result<Session, AppError> {
    let expires_at = app.now() + app.web.session_ttl_ms;
    Ok(Session {
        token: issue_recorded(app, Kind::Me, subject, expires_at).await?,
        subject: subject.to_owned(),
        expires_at,
    })
}

/// The person (or, for the console, the API key) a token of `kind` stands for, if it is authentic
/// and not expired and, for links and sessions, recorded and not ended (nor, for a link, opened).
/// `Err` only when the store cannot answer: that is not a session that ended.
pub async fn holder(app: &App, kind: Kind, token: &str) -> Result<Option<String>, AppError> {
    let now = app.now();
    let Ok(claims) = verify(&app.vault, kind, token, now) else { return Ok(None) };
    let Some(recorded) = kind.recorded() else { return Ok(Some(claims.who)) };
    let holder = app.store.web_session_holder(&claims.id, recorded, now).await?;
    Ok(holder.filter(|holder| *holder == claims.who))
}

/// What an erasure or sign-in token names (a request id, a sign-in code's id), if it is authentic
/// and not expired. Those kinds are not recorded; a link or session gets `None` here (see
/// [`holder`]).
pub fn named_by(app: &App, kind: Kind, token: &str) -> Option<String> {
    if kind.recorded().is_some() {
        return None;
    }
    verify(&app.vault, kind, token, app.now()).ok().map(|claims| claims.who)
}

/// Ends the link or session `token` names, on every instance (signing out). An invalid token ends
/// nothing.
pub async fn end(app: &App, kind: Kind, token: &str) -> Result<(), AppError> {
    let now = app.now();
    if let (Ok(claims), Some(_)) = (verify(&app.vault, kind, token, now), kind.recorded()) {
        app.store.end_web_session(&claims.id, now).await?;
    }
    Ok(())
}

/// Signs the person `reference` names out everywhere, for a brand system whose role may end
/// sessions: every preference-center session and every unopened link of their family ends, and
/// their access log says so. Returns the person's id and how many were ended.
pub async fn end_sessions(
    app: &App,
    caller: &crate::Caller,
    reference: &str,
) -> Result<(String, u64), AppError> {
    caller.require(tactful_domain::catalog::Capability::EndSessions)?;
    let subject = crate::subjects::find(app, reference).await?;
    let entry = crate::preferences::audit(app, &subject, "signed_out_everywhere", Some(&caller.key));
    let ended = app.store.end_web_sessions(&subject, vec![entry], app.now()).await?;
    Ok((subject, ended))
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
}
