//! Opening what a store hands back sealed: a subject family's profile, events and identifiers,
//! decrypted with the vault for the one request that needs them. Every reader (the profile API,
//! exports, tests) opens data here, so the associated-data labels are written in one place.

use std::collections::HashMap;

use serde_json::Value;
use tactful_vault::Zeroizing;
use tactful_vault::{SubjectKey, Vault};

use crate::{Result, StoreError, StoredEvent, SubjectData, seal_context};

/// A profile value, opened. Where several members of a family hold the same path, the newest wins.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenProfileValue {
    pub path: String,
    pub value: Value,
    pub updated_at: i64,
}

/// A stored event, opened: what minimization and consent kept of the message.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenEvent {
    pub source: String,
    pub kind: String,
    pub name: Option<String>,
    pub timestamp: i64,
    pub received_at: i64,
    pub record: Value,
}

/// An identifier of the family, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIdentity {
    pub kind: String,
    pub value: Zeroizing<String>,
}

/// The data keys of a family, unwrapped, to open what its members' rows hold.
pub struct FamilyKeys {
    keys: HashMap<String, SubjectKey>,
}

impl std::fmt::Debug for FamilyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyKeys").field("members", &self.keys.len()).finish_non_exhaustive()
    }
}

impl FamilyKeys {
    /// Unwraps each member's key (`(member, wrapped key)`, as [`SubjectData::keys`] holds them).
    pub fn unwrap(vault: &Vault, wrapped: &[(String, Vec<u8>)]) -> Result<FamilyKeys> {
        let keys = wrapped
            .iter()
            .map(|(member, wrapped)| Ok((member.clone(), vault.subject_key(member, wrapped)?)))
            .collect::<Result<_>>()?;
        Ok(FamilyKeys { keys })
    }

    fn of(&self, member: &str) -> Result<&SubjectKey> {
        self.keys
            .get(member)
            .ok_or_else(|| StoreError::Internal(format!("no key for family member {member}")))
    }

    /// Opens one stored event of the family.
    pub fn open_event(&self, stored: &StoredEvent) -> Result<OpenEvent> {
        Ok(OpenEvent {
            source: stored.source.clone(),
            kind: stored.kind.clone(),
            name: stored.name.clone(),
            timestamp: stored.timestamp,
            received_at: stored.received_at,
            record: self.open_record(&stored.subject, &stored.source, &stored.dedupe, &stored.sealed)?,
        })
    }

    /// Opens the sealed record of an event of member `subject` (as a window scan returns it).
    pub fn open_record(
        &self,
        subject: &str,
        source: &str,
        dedupe: &[u8; 16],
        sealed: &[u8],
    ) -> Result<Value> {
        let plain = self.of(subject)?.open(
            seal_context::EVENT,
            &seal_context::event(subject, source, dedupe),
            sealed,
        )?;
        decode(&plain, "event")
    }
}

fn decode(plain: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(plain)
        .map_err(|error| StoreError::Internal(format!("a sealed {what} is not JSON: {error}")))
}

impl SubjectData {
    /// The family's profile, newest value per path, sorted by path.
    pub fn open_profile(&self, vault: &Vault) -> Result<Vec<OpenProfileValue>> {
        let keys = FamilyKeys::unwrap(vault, &self.keys)?;
        let mut newest: HashMap<&str, OpenProfileValue> = HashMap::new();
        for stored in &self.profile {
            if newest.get(stored.path.as_str()).is_some_and(|kept| kept.updated_at > stored.updated_at) {
                continue;
            }
            let plain = keys.of(&stored.subject)?.open(
                seal_context::PROFILE,
                &seal_context::profile(&stored.subject, &stored.path),
                &stored.sealed,
            )?;
            let value = decode(&plain, "profile value")?;
            newest.insert(
                &stored.path,
                OpenProfileValue { path: stored.path.clone(), value, updated_at: stored.updated_at },
            );
        }
        let mut profile: Vec<OpenProfileValue> = newest.into_values().collect();
        profile.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(profile)
    }

    /// The family's events, in the order the store returned them.
    pub fn open_events(&self, vault: &Vault) -> Result<Vec<OpenEvent>> {
        let keys = FamilyKeys::unwrap(vault, &self.keys)?;
        self.events.iter().map(|stored| keys.open_event(stored)).collect()
    }

    /// The family's identifiers.
    pub fn open_identities(&self, vault: &Vault) -> Result<Vec<OpenIdentity>> {
        let keys = FamilyKeys::unwrap(vault, &self.keys)?;
        self.identities
            .iter()
            .map(|stored| {
                let plain = keys.of(&stored.subject)?.open(
                    seal_context::IDENTITY,
                    &seal_context::identity(&stored.subject, &stored.blind.0),
                    &stored.sealed,
                )?;
                let value = String::from_utf8(plain.to_vec())
                    .map_err(|_| StoreError::Internal("a sealed identifier is not UTF-8".into()))?;
                Ok(OpenIdentity { kind: stored.kind.clone(), value: Zeroizing::new(value) })
            })
            .collect()
    }
}
