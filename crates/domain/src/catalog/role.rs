//! What an API key's role may do: read its categories for its purposes, make the requests it lists,
//! and use the capabilities it is given. Anything a role does not list, it may not (default deny).

use super::DestinationMessage;

/// A role API keys can carry: which purposes it may read for and which categories it may see, which
/// requests it may make for a person, and what else it may do.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    pub purposes: Vec<String>,
    pub categories: Vec<String>,
    /// The requests it may make (and whose deadlines it may extend) for a person the brand has
    /// verified, or start as self-service for someone who proves it with a code.
    pub requests: Vec<RequestKind>,
    /// What it may do beyond reading its categories.
    pub may: Vec<Capability>,
}

impl Role {
    /// Whether the role lists this capability.
    pub fn may(&self, capability: Capability) -> bool {
        self.may.contains(&capability)
    }

    /// Whether the role lists this kind of request.
    pub fn may_request(&self, kind: RequestKind) -> bool {
        self.requests.contains(&kind)
    }
}

/// What a role may do beyond reading its categories: a closed set, each granted by name in the
/// role's `may` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Download the package of a finished access or export request; only of people whose every
    /// held category the role covers, since a package holds everything.
    DownloadPackages,
    /// Mint a link to a person's preference center (which shows the person everything held).
    IssueLinks,
    /// Submit the one-time code of a self-service request on the person's behalf.
    VerifyRequests,
    /// Verify the audit log and list or sign its checkpoints.
    ReadAuditLog,
    /// Sign a person out everywhere: end their preference-center sessions and unopened links.
    EndSessions,
}

impl Capability {
    pub const ALL: [Capability; 5] = [
        Capability::DownloadPackages,
        Capability::IssueLinks,
        Capability::VerifyRequests,
        Capability::ReadAuditLog,
        Capability::EndSessions,
    ];

    /// The name the catalog's `may` list uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::DownloadPackages => "download_packages",
            Capability::IssueLinks => "issue_links",
            Capability::VerifyRequests => "verify_requests",
            Capability::ReadAuditLog => "read_audit_log",
            Capability::EndSessions => "end_sessions",
        }
    }

    pub fn parse(text: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|capability| capability.as_str() == text)
    }

    /// What it allows, in words ("download packages").
    pub fn in_words(self) -> &'static str {
        match self {
            Capability::DownloadPackages => "download packages",
            Capability::IssueLinks => "issue preference-center links",
            Capability::VerifyRequests => "verify requests on a person's behalf",
            Capability::ReadAuditLog => "read the audit log",
            Capability::EndSessions => "sign people out everywhere",
        }
    }
}

/// What a person asks for: the kinds of data-subject request. The catalog names them (a role's
/// `requests`, the messages destinations receive), so they are catalog words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// A copy of everything held about them, for them to read.
    Access,
    /// The same, for them to take elsewhere (portability).
    Export,
    /// Correct a profile value.
    Rectify,
    /// Freeze processing: nothing but what the law requires, until lifted.
    Restrict,
    /// Lift a restriction.
    Unrestrict,
    /// Object to one purpose (withdraws it through the consent ledger).
    Object,
    /// Erase everything, everywhere, except what the law requires to keep.
    Erase,
    /// Drop their future events at the door (a keyed hash of their identifiers is kept).
    Suppress,
    /// Lift a suppression.
    Unsuppress,
}

impl RequestKind {
    pub const ALL: [RequestKind; 9] = [
        RequestKind::Access,
        RequestKind::Export,
        RequestKind::Rectify,
        RequestKind::Restrict,
        RequestKind::Unrestrict,
        RequestKind::Object,
        RequestKind::Erase,
        RequestKind::Suppress,
        RequestKind::Unsuppress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Export => "export",
            RequestKind::Rectify => "rectify",
            RequestKind::Restrict => "restrict",
            RequestKind::Unrestrict => "unrestrict",
            RequestKind::Object => "object",
            RequestKind::Erase => "erase",
            RequestKind::Suppress => "suppress",
            RequestKind::Unsuppress => "unsuppress",
        }
    }

    pub fn parse(text: &str) -> Option<RequestKind> {
        RequestKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// What destinations are told when this request is carried out, if anything.
    pub fn propagates_as(self) -> Option<DestinationMessage> {
        match self {
            RequestKind::Access | RequestKind::Export => None,
            RequestKind::Rectify => Some(DestinationMessage::Rectify),
            RequestKind::Restrict => Some(DestinationMessage::Restrict),
            RequestKind::Unrestrict => Some(DestinationMessage::Unrestrict),
            RequestKind::Object => Some(DestinationMessage::Object),
            RequestKind::Erase => Some(DestinationMessage::Erase),
            RequestKind::Suppress => Some(DestinationMessage::Suppress),
            RequestKind::Unsuppress => Some(DestinationMessage::Unsuppress),
        }
    }

    /// Whether the person's data can be read while it runs (erasure makes it unreadable).
    pub fn reads_data(self) -> bool {
        matches!(self, RequestKind::Access | RequestKind::Export)
    }
}
