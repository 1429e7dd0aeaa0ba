//! The audit log's entries and its verification. Every access, decision, consent change and key
//! change is an entry; entries are leaves of an RFC 6962 Merkle tree whose roots are signed at
//! checkpoints, so altering, removing, reordering or truncating entries is detected by anyone who
//! kept a checkpoint. Entries name subjects only by pseudonym and hold no personal value.

use serde::{Deserialize, Serialize};

use crate::consent::{ConsentKind, ConsentMethod};
use crate::encoding::hex;
use crate::merkle::{self, Frontier, Hash};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A purpose-gated read of a subject's data.
    Read {
        /// The API key that read (its public id).
        actor: String,
        role: String,
        purpose: String,
        /// The subject's pseudonym.
        subject: String,
        /// Data categories returned.
        returned: Vec<String>,
        withheld: Vec<Withheld>,
        decision: ReadDecision,
    },
    /// A consent change (the ledger entry and its receipt).
    Consent {
        subject: String,
        purpose: String,
        change: ConsentKind,
        method: ConsentMethod,
        version: u32,
        receipt: String,
        source: Option<String>,
    },
    KeyCreated {
        key: String,
        name: String,
        role: String,
        expires_at: Option<i64>,
    },
    KeyRevoked {
        key: String,
    },
    /// A data-subject request changed status (or made progress worth recording).
    Request {
        request: String,
        /// `access`, `erase`, …
        request_kind: String,
        subject: String,
        status: String,
        note: String,
    },
    /// A subject's keys were destroyed: everything sealed under them is unreadable.
    Erased {
        request: String,
        subject: String,
        /// Family members whose keys went.
        members: usize,
        identifiers: u64,
        suppressed: u64,
    },
    /// An attempt to tell a destination about a request or a consent change.
    Delivery {
        request: String,
        destination: String,
        message: String,
        attempt: u32,
        outcome: String,
    },
    /// The retention job deleted what had outlived its declared retention.
    Retention {
        events_deleted: u64,
        events_trimmed: u64,
        profile_values_deleted: u64,
        legal_holds_deleted: u64,
    },
    /// The server started with a catalog (its hash, so a changed data map shows in the log).
    PolicyLoaded {
        catalog_sha256: String,
        purposes: usize,
        properties: usize,
        jurisdictions: usize,
        guardrails: Vec<String>,
    },
    /// A recommendation model released with differential-privacy noise: the privacy it spent.
    ModelReleased {
        people: u32,
        pairs: u64,
        /// ε and δ as decimal text (the entry is hashed; floats are written once, exactly).
        epsilon: String,
        delta: String,
    },
    /// Items of the brand's catalogue written (not personal data: how many, by whom).
    ItemsWritten {
        actor: String,
        count: u64,
    },
    /// An aggregate query answered (or a pseudonymized dataset exported): who asked, for which
    /// purpose, what, and the ε it spent (as decimal text).
    Insights {
        actor: String,
        role: String,
        purpose: String,
        dataset: String,
        metric: String,
        property: Option<String>,
        dimensions: Vec<String>,
        epsilon: String,
        /// Absent when the query was answered (as in entries written before refusals were
        /// recorded); `refused: …` with the reason when it was refused, like a query that would
        /// overspend the budget or was not computed within its deadline (its ε is then 0: nothing
        /// was spent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<String>,
    },
    /// The preference center: a link issued to a person (by `actor`, an API key), the person
    /// signing in with it, or telling their interests. Names what happened, never a value.
    PreferenceCenter {
        subject: String,
        /// `link_issued`, `signed_in`, `interests_changed`, `signed_out`.
        action: String,
        actor: Option<String>,
    },
    /// Someone signed in to the brand console with an API key.
    ConsoleSignIn {
        actor: String,
        role: String,
    },
    /// Records of many people exported at once (the consent ledger): who, for which purpose, what
    /// and how many rows. Names no one: the rows name subjects by id only.
    Export {
        actor: String,
        role: String,
        purpose: String,
        dataset: String,
        rows: u64,
    },
}

impl AuditEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Read { .. } => "read",
            AuditEvent::Consent { .. } => "consent",
            AuditEvent::KeyCreated { .. } => "key_created",
            AuditEvent::KeyRevoked { .. } => "key_revoked",
            AuditEvent::Request { .. } => "request",
            AuditEvent::Erased { .. } => "erased",
            AuditEvent::Delivery { .. } => "delivery",
            AuditEvent::Retention { .. } => "retention",
            AuditEvent::ModelReleased { .. } => "model_released",
            AuditEvent::ItemsWritten { .. } => "items_written",
            AuditEvent::Insights { .. } => "insights",
            AuditEvent::PolicyLoaded { .. } => "policy_loaded",
            AuditEvent::PreferenceCenter { .. } => "preference_center",
            AuditEvent::ConsoleSignIn { .. } => "console_sign_in",
            AuditEvent::Export { .. } => "export",
        }
    }

    /// The pseudonym of the subject concerned, if any (to find a person's own access log).
    pub fn subject(&self) -> Option<&str> {
        match self {
            AuditEvent::Read { subject, .. }
            | AuditEvent::Consent { subject, .. }
            | AuditEvent::Request { subject, .. }
            | AuditEvent::Erased { subject, .. }
            | AuditEvent::PreferenceCenter { subject, .. } => Some(subject),
            _ => None,
        }
    }
}

/// Properties a read left out: how many of a category, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Withheld {
    pub category: String,
    pub reason: String,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadDecision {
    /// Everything asked for was returned.
    Permitted,
    /// Some properties were withheld.
    Partial,
    /// Nothing could be returned.
    Denied,
}

/// An entry as stored: its position, time and event. Its text is what the leaf hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditEntry {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn leaf(text: &str) -> Hash {
        merkle::leaf_hash(text.as_bytes())
    }
}

/// An entry serialized before its position is known, so the costly part of appending (the JSON) can
/// be done by the caller while the log's single appender only writes the position in front of it.
/// [`Unnumbered::text`] is byte for byte [`AuditEntry::to_text`] of the same entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unnumbered {
    at: i64,
    kind: &'static str,
    subject: Option<String>,
    /// The entry's JSON after its `{"seq":N` opening.
    rest: String,
}

/// How every entry's JSON opens when its position is zero: `seq` is always its first field.
const UNNUMBERED_OPENING: &str = "{\"seq\":0";

impl Unnumbered {
    pub fn new(at: i64, event: AuditEvent) -> Unnumbered {
        let (kind, subject) = (event.kind(), event.subject().map(str::to_owned));
        let text = AuditEntry { seq: 0, at, event }.to_text();
        let rest = text.strip_prefix(UNNUMBERED_OPENING).map(str::to_owned).unwrap_or_default();
        Unnumbered { at, kind, subject, rest }
    }

    /// The entry's text at position `seq`, what its leaf hash covers.
    pub fn text(&self, seq: u64) -> String {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(28 + self.rest.len());
        let _ = write!(text, "{{\"seq\":{seq}");
        text.push_str(&self.rest);
        text
    }

    pub fn at(&self) -> i64 {
        self.at
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

/// What a checkpoint signature covers, kept apart from every other signature of the brand.
pub const CHECKPOINT_CONTEXT: &str = "tactful-audit-checkpoint-v1";

/// A signed tree head: the log had `size` entries with Merkle root `root` at `at`. Exported for
/// outside parties to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub size: u64,
    /// Hex.
    pub root: String,
    pub at: i64,
    pub key_id: String,
    /// Base64 Ed25519 public key.
    pub public_key: String,
    /// Base64 Ed25519 signature of [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The bytes signed for a checkpoint.
    pub fn message(size: u64, root: &Hash, at: i64) -> Vec<u8> {
        format!("size {size}\nroot {}\nat {at}\n", hex(root)).into_bytes()
    }

    pub fn root_hash(&self) -> Option<Hash> {
        unhex(&self.root)
    }
}

pub fn unhex(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (index, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * index..2 * index + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// A way the log differs from what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Entries `from..=to` are missing.
    Missing { from: u64, to: u64 },
    /// Entry `seq` does not match its recorded hash: edited in place.
    Altered { seq: u64 },
    /// The entry stored at `seq` says it belongs at `records`: moved or swapped.
    Moved { seq: u64, records: u64 },
    /// The first `size` entries no longer give the root a signed checkpoint recorded: an entry after
    /// `after` was changed and its hash recomputed to hide it.
    Diverged { after: u64, size: u64, origin: String },
    /// The log ends after `have` entries, but a checkpoint covered `kept`.
    Truncated { have: u64, kept: u64 },
    /// A checkpoint's signature does not verify.
    BadSignature { size: u64, origin: String },
}

impl Problem {
    /// The earliest entry the problem concerns.
    pub fn first_entry(&self) -> u64 {
        match self {
            Problem::Missing { from, .. } => *from,
            Problem::Altered { seq } | Problem::Moved { seq, .. } => *seq,
            Problem::Diverged { after, .. } => after + 1,
            Problem::Truncated { have, .. } => have + 1,
            Problem::BadSignature { size, .. } => *size,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Problem::Missing { from, to } if from == to => format!("entry {from} is missing (removed)"),
            Problem::Missing { from, to } => format!("entries {from} to {to} are missing (removed)"),
            Problem::Altered { seq } => {
                format!("entry {seq} was altered: its content does not match its hash")
            }
            Problem::Moved { seq, records } => {
                format!("entry {seq} holds the entry of position {records}: entries were moved or reordered")
            }
            Problem::Diverged { after, size, origin } => format!(
                "the first {size} entries no longer match the signed checkpoint ({origin}): an entry after {after} was altered and its hash rewritten"
            ),
            Problem::Truncated { have, kept } => {
                format!(
                    "the log was truncated: it ends at entry {have}, but a checkpoint covered {kept} entries"
                )
            }
            Problem::BadSignature { size, origin } => {
                format!("the checkpoint at {size} entries ({origin}) has an invalid signature")
            }
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: u64,
    pub root: Hash,
    /// Signed checkpoints the log was checked against.
    pub checkpoints: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first entry that is not as it was, when the log is not intact.
    pub fn first_bad_entry(&self) -> Option<u64> {
        self.problems.iter().map(Problem::first_entry).min()
    }

    /// Where the first bad entry lies, in words: `4`, or `between 5 and 8` when an entry was altered
    /// with its hash rewritten (signed checkpoints then bound it, no closer).
    pub fn first_bad_entry_in_words(&self) -> Option<String> {
        let first = self.problems.iter().min_by_key(|problem| problem.first_entry())?;
        Some(match first {
            Problem::Diverged { after, size, .. } if size - after > 1 => {
                format!("between {} and {size}", after + 1)
            }
            other => other.first_entry().to_string(),
        })
    }
}

/// Checks a log entry by entry, in order, against checkpoints whose signatures the caller verified
/// (pass `BadSignature` problems for the others to [`Verifier::reject`]).
#[derive(Debug)]
pub struct Verifier {
    frontier: Frontier,
    next_seq: u64,
    /// `(size, root, origin)`, sorted by size.
    checkpoints: Vec<(u64, Hash, String)>,
    next_checkpoint: usize,
    last_matching: u64,
    problems: Vec<Problem>,
}

#[derive(Deserialize)]
struct Position {
    seq: u64,
}

/// An entry's position, text and recorded leaf hash, as [`Verifier::entries`] reads them.
pub type EntryParts<'a> = (u64, &'a str, &'a Hash);

/// Fewer entries than this are not worth a thread of their own.
const MIN_CHUNK: usize = 2_048;

/// What can be learned of one entry on its own: its leaf hash, and (if that matches the recorded
/// one) the position its text records (`Err` if the text is not an entry).
struct Checked {
    leaf: Hash,
    /// `None` when the leaf does not match the recorded hash: the entry was altered.
    position: Option<Result<u64, ()>>,
}

impl Checked {
    fn of(text: &str, recorded_leaf: &Hash) -> Checked {
        let leaf = AuditEntry::leaf(text);
        let position = (&leaf == recorded_leaf)
            .then(|| serde_json::from_str::<Position>(text).map(|position| position.seq).map_err(|_| ()));
        Checked { leaf, position }
    }
}

impl Verifier {
    pub fn new(mut checkpoints: Vec<(u64, Hash, String)>) -> Verifier {
        checkpoints.sort_by_key(|(size, _, _)| *size);
        checkpoints.dedup_by(|later, earlier| later.0 == earlier.0 && later.1 == earlier.1);
        Verifier {
            frontier: Frontier::new(),
            next_seq: 1,
            checkpoints,
            next_checkpoint: 0,
            last_matching: 0,
            problems: Vec::new(),
        }
    }

    pub fn reject(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// The next stored entry: its position, text and recorded leaf hash.
    pub fn entry(&mut self, seq: u64, text: &str, recorded_leaf: &Hash) {
        let checked = Checked::of(text, recorded_leaf);
        self.fold(seq, checked);
    }

    /// The next stored entries, in order: the same as [`Verifier::entry`] on each, but their leaves
    /// are hashed and their texts read on every core at once (in contiguous chunks), and only the
    /// Merkle tree and the checkpoints are then followed one entry after another.
    pub fn entries<'a, T: Sync>(&mut self, page: &'a [T], parts: impl Fn(&'a T) -> EntryParts<'a> + Sync) {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        self.entries_in_chunks(page, parts, page.len().div_ceil(threads).max(MIN_CHUNK));
    }

    /// [`Verifier::entries`] with `chunk` entries per thread.
    fn entries_in_chunks<'a, T: Sync>(
        &mut self,
        page: &'a [T],
        parts: impl Fn(&'a T) -> EntryParts<'a> + Sync,
        chunk: usize,
    ) {
        let chunk = chunk.max(1);
        let check = |entries: &'a [T]| -> Vec<Checked> {
            entries
                .iter()
                .map(|entry| {
                    let (_, text, leaf) = parts(entry);
                    Checked::of(text, leaf)
                })
                .collect()
        };
        let checked: Vec<Vec<Checked>> =
            if page.len() <= chunk {
                vec![check(page)]
            } else {
                std::thread::scope(|scope| {
                    let (first, others) = page.split_at(chunk);
                    let running: Vec<_> =
                        others.chunks(chunk).map(|entries| scope.spawn(move || check(entries))).collect();
                    let mut checked = vec![check(first)];
                    // A thread only hashes and parses; should one panic, so does the verification
                    // (a report missing entries would be wrong).
                    checked.extend(running.into_iter().map(|thread| {
                        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    }));
                    checked
                })
            };
        for (entry, checked) in page.iter().zip(checked.into_iter().flatten()) {
            let (seq, _, _) = parts(entry);
            self.fold(seq, checked);
        }
    }

    /// Takes an entry already checked on its own into the tree, in log order.
    fn fold(&mut self, seq: u64, checked: Checked) {
        if seq > self.next_seq {
            self.problems.push(Problem::Missing { from: self.next_seq, to: seq - 1 });
        }
        match checked.position {
            Some(Ok(position)) if position == seq => {}
            Some(Ok(position)) => self.problems.push(Problem::Moved { seq, records: position }),
            Some(Err(())) | None => self.problems.push(Problem::Altered { seq }),
        }
        self.frontier.push(checked.leaf);
        self.next_seq = self.next_seq.max(seq + 1);
        self.compare_checkpoints();
    }

    fn compare_checkpoints(&mut self) {
        let size = self.frontier.size();
        while let Some((checkpoint_size, root, origin)) = self.checkpoints.get(self.next_checkpoint) {
            if *checkpoint_size > size {
                break;
            }
            if *checkpoint_size == size {
                if self.frontier.root() == *root {
                    self.last_matching = size;
                } else if self.problems.is_empty() {
                    // Only the first divergence says something: once an entry is bad, every later
                    // checkpoint differs too. A divergence already explained by a named entry
                    // (altered, missing, moved) adds nothing.
                    self.problems.push(Problem::Diverged {
                        after: self.last_matching,
                        size,
                        origin: origin.clone(),
                    });
                }
            }
            self.next_checkpoint += 1;
        }
    }

    pub fn finish(mut self) -> Report {
        let have = self.frontier.size();
        if let Some((kept, _, _)) = self.checkpoints.last()
            && *kept > have
        {
            self.problems.push(Problem::Truncated { have, kept: *kept });
        }
        self.problems.sort_by_key(Problem::first_entry);
        Report {
            entries: have,
            root: self.frontier.root(),
            checkpoints: self.checkpoints.len(),
            problems: self.problems,
        }
    }
}

#[cfg(test)]
mod tests;
