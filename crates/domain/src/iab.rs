//! Consent strings that consent management platforms (CMPs) produce: the IAB Transparency and
//! Consent Framework v2.2 TC string (`tcf`) and the IAB Global Privacy Platform string (`gpp`) with
//! its EU TCF and US state sections (`us`). Decoding only, no IO; a malformed string is refused
//! with a reason naming the segment and field, never guessed at.

mod bits;
pub mod gpp;
pub mod tcf;
pub mod us;

use std::fmt;

/// Why a consent string could not be read: where (string, segment, field) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringError {
    /// `tcString`, `gppString`, or a GPP section (`gpp section usnat`).
    pub string: String,
    /// The segment (`core`, `publisher purposes`, `header`, `gpc`, …).
    pub segment: String,
    /// The field as the IAB specification names it (`MaxVendorId`, `SectionIds`, …), if one.
    pub field: Option<String>,
    pub problem: String,
}

impl fmt::Display for StringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} segment", self.string, self.segment)?;
        if let Some(field) = &self.field {
            write!(f, ", field {field}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for StringError {}

/// Where a decoder is, so each problem it finds names its place.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    string: String,
    segment: String,
}

impl Place {
    pub(crate) fn new(string: impl Into<String>, segment: impl Into<String>) -> Place {
        Place { string: string.into(), segment: segment.into() }
    }

    pub(crate) fn segment(&self, segment: impl Into<String>) -> Place {
        Place { string: self.string.clone(), segment: segment.into() }
    }

    pub(crate) fn error(&self, field: Option<&str>, problem: impl Into<String>) -> StringError {
        StringError {
            string: self.string.clone(),
            segment: self.segment.clone(),
            field: field.map(str::to_owned),
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests;
