//! What makes the tokens people and brand users hold revocable: every preference-center link,
//! preference-center session and console session is recorded by its random id, so signing out (on
//! any instance) ends it for all, and a link opens one session only.

use async_trait::async_trait;
use tactful_domain::audit::AuditEvent;

use crate::Result;

/// Which kind of token a recorded id belongs to; an id of one kind never passes for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSessionKind {
    /// A link to the preference center: valid until it is opened (once) or ended.
    Link,
    /// A person's preference-center session.
    Me,
    /// A brand user's console session (its holder is an API key id).
    Console,
}

impl WebSessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WebSessionKind::Link => "link",
            WebSessionKind::Me => "me",
            WebSessionKind::Console => "console",
        }
    }
}

/// A link or session as recorded: its random id, who holds it, and until when it counts. No
/// personal data: the holder is a subject id (`sub_…`) or, for the console, an API key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// 128 random bits, the id the token carries (under its MAC).
    pub id: String,
    pub kind: WebSessionKind,
    pub holder: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Links and sessions, checked on every request, on every instance.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Records a new link or session.
    async fn create_web_session(&self, session: WebSession) -> Result<()>;

    /// Who holds `id` of `kind`, if it is recorded and, at `now`, neither expired nor ended nor
    /// (a link) opened.
    async fn web_session_holder(&self, id: &str, kind: WebSessionKind, now: i64) -> Result<Option<String>>;

    /// Opens link `id` once, atomically across instances: when it is valid at `now`, marks it
    /// opened, records `session` and appends `audit`, in one commit, and answers true. Otherwise
    /// (opened before, ended, expired or unknown) it changes nothing and answers false.
    async fn open_web_link(
        &self,
        id: &str,
        session: WebSession,
        audit: Vec<AuditEvent>,
        now: i64,
    ) -> Result<bool>;

    /// Ends one link or session (signing out); false if it had already ended, expired or was
    /// never recorded.
    async fn end_web_session(&self, id: &str, now: i64) -> Result<bool>;

    /// Ends every session and unopened link of the family of `subject` (every subject merged with
    /// it), appending `audit` in the same commit. Answers how many were still valid.
    async fn end_web_sessions(&self, subject: &str, audit: Vec<AuditEvent>, now: i64) -> Result<u64>;

    /// Forgets up to `limit` links and sessions that expired before `now` (they are refused anyway).
    async fn purge_web_sessions(&self, now: i64, limit: u32) -> Result<u64>;
}
