//! The one purpose-gated read path. Every read of a person's data, by any door, goes through a
//! [`Read`]: it names who reads and for which purpose, opens only what the decision permits (the
//! caller counts what it returned and what it withheld, by category and reason, never a value),
//! and is committed to the person's audit trail before the answer leaves. The reads themselves:
//! profiles ([`profile`]), what an erasure kept ([`holds`]), consent records and the access log
//! ([`records`]); packages and the preference center's own view call [`Read`] the same way.

pub mod holds;
pub mod profile;
pub mod records;

use std::collections::{BTreeMap, BTreeSet};

use tactful_domain::audit::{AuditEvent, ReadDecision, Withheld};
use tactful_store::StoreError;

use crate::error::AppError;
use crate::{App, Caller};

/// The purpose of reads that answer a person's rights or keep consent records: the legal
/// obligation to do so.
pub const RIGHTS_PURPOSE: &str = "essential.legal_obligation";

/// Who reads.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    /// A brand system or user, by its API key.
    Key(&'a Caller),
    /// The person, reading their own data (preference center, their own API).
    Person,
    /// The operator at the command line, who holds the master key.
    Operator,
    /// A forwarding destination (by its catalog key), sent what its purposes permit.
    Destination(&'a str),
}

impl Reader<'_> {
    /// Who, as the audit log names them.
    pub fn actor(&self) -> &str {
        match self {
            Reader::Key(caller) => &caller.key,
            Reader::Person => "subject",
            Reader::Operator => "cli",
            Reader::Destination(key) => key,
        }
    }

    /// In which role.
    pub fn role(&self) -> &str {
        match self {
            Reader::Key(caller) => &caller.role.name,
            Reader::Person => "self",
            Reader::Operator => "operator",
            Reader::Destination(_) => "destination",
        }
    }

    /// Refuses a key whose role does not cover consent records (the person and the operator may).
    pub fn require_privacy(&self) -> Result<(), AppError> {
        match self {
            Reader::Key(caller) => caller.require_privacy(),
            Reader::Person | Reader::Operator => Ok(()),
            Reader::Destination(_) => Err(AppError::new(crate::error::ErrorCode::Forbidden)),
        }
    }

    /// Whether the reader may see data of this category.
    pub fn covers_category(&self, category: &str) -> bool {
        match self {
            Reader::Key(caller) => caller.covers_category(category),
            Reader::Person | Reader::Operator => true,
            Reader::Destination(_) => false,
        }
    }
}

/// One read of one person's data, being answered: what it returned and withheld, by category.
#[must_use = "a read is only done once committed to the audit log"]
pub struct Read<'a> {
    app: &'a App,
    actor: String,
    role: String,
    purpose: String,
    subject: String,
    returned: BTreeSet<String>,
    withheld: BTreeMap<(String, String), u32>,
    refused: bool,
}

impl<'a> Read<'a> {
    /// Starts a read of `subject`'s data by `reader` for `purpose`.
    pub fn new(app: &'a App, reader: &Reader<'_>, purpose: &str, subject: &str) -> Read<'a> {
        Read {
            app,
            actor: reader.actor().to_owned(),
            role: reader.role().to_owned(),
            purpose: purpose.to_owned(),
            subject: subject.to_owned(),
            returned: BTreeSet::new(),
            withheld: BTreeMap::new(),
            refused: false,
        }
    }

    /// Data of this category is in the answer.
    pub fn returned(&mut self, category: &str) {
        if !self.returned.contains(category) {
            self.returned.insert(category.to_owned());
        }
    }

    /// `count` items of this category were left out, for this reason (a policy reason's words).
    pub fn withheld(&mut self, category: &str, reason: &str, count: u32) {
        let total = self.withheld.entry((category.to_owned(), reason.to_owned())).or_default();
        *total = total.saturating_add(count);
    }

    /// What the read came to: everything, part, or nothing.
    pub fn decision(&self) -> ReadDecision {
        match (self.returned.is_empty(), self.withheld.is_empty()) {
            _ if self.refused => ReadDecision::Denied,
            (_, true) => ReadDecision::Permitted,
            (true, false) => ReadDecision::Denied,
            (false, false) => ReadDecision::Partial,
        }
    }

    /// The categories returned, in order.
    pub fn returned_categories(&self) -> Vec<String> {
        self.returned.iter().cloned().collect()
    }

    /// What was withheld, by category and reason.
    pub fn withheld_list(&self) -> Vec<Withheld> {
        self.withheld
            .iter()
            .map(|((category, reason), count)| Withheld {
                category: category.clone(),
                reason: reason.clone(),
                count: *count,
            })
            .collect()
    }

    /// Writes the read to the audit log (under the person's pseudonym), durably, before the answer
    /// is sent. Returns the decision recorded.
    pub async fn commit(self) -> Result<ReadDecision, StoreError> {
        let (app, decision) = (self.app, self.decision());
        app.store.audit_append(vec![self.into_entry()], app.now()).await?;
        Ok(decision)
    }

    /// The audit entry of the read, for a caller that commits many reads' entries at once (each
    /// before its own answer leaves).
    pub fn into_entry(self) -> AuditEvent {
        AuditEvent::Read {
            returned: self.returned_categories(),
            withheld: self.withheld_list(),
            decision: self.decision(),
            actor: self.actor,
            role: self.role,
            purpose: self.purpose,
            subject: self.app.vault.subject_pseudonym(&self.subject),
        }
    }

    /// Records the read as refused (nothing returned) and returns `error`, the refusal to answer.
    pub async fn refuse(mut self, error: AppError) -> AppError {
        self.refused = true;
        self.returned.clear();
        match self.commit().await {
            Ok(_) => error,
            Err(failed) => failed.into(),
        }
    }
}
