//! What lets a caller in: the brand's API keys (stored hashed) and the one-time codes that sign a
//! person in to the preference center (stored hashed, used once, with few tries).

use async_trait::async_trait;
use tactful_domain::audit::AuditEvent;

use crate::{ApiKeyRecord, CodeOutcome, Result, SignInCode};

/// API keys and sign-in codes.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Stores a new API key (its hash) with the audit entry of its creation.
    async fn create_api_key(&self, key: ApiKeyRecord, audit: AuditEvent) -> Result<()>;

    /// The key whose secret hashes to `hash`, if any (revoked and expired ones included).
    async fn api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>>;

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;

    /// Revokes a key; false if there is no such key or it was already revoked.
    async fn revoke_api_key(&self, id: &str, at: i64, audit: AuditEvent) -> Result<bool>;

    /// Keeps a one-time sign-in code (its hash) and, in the same transaction, its sealed message in
    /// the outbox; forgets codes that expired a day ago or more.
    async fn create_sign_in_code(&self, code: SignInCode) -> Result<()>;

    /// Tries code `hash` for sign-in `id` at `now`, atomically across instances: a match of an
    /// unexpired, unused code of a known person with tries left is used up and accepted; anything
    /// else counts as a try; after `max_attempts` tries, or once expired or used, it is refused.
    async fn try_sign_in_code(
        &self,
        id: &str,
        hash: [u8; 32],
        now: i64,
        max_attempts: u32,
    ) -> Result<CodeOutcome>;
}
