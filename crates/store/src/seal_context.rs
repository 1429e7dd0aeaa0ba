//! Associated-data labels: where a sealed value belongs. Opening a value under another label,
//! subject or path fails.

pub const EVENT: &str = "event";
pub const PROFILE: &str = "profile";
pub const IDENTITY: &str = "identity";

pub fn event<'a>(subject: &'a str, source: &'a str, dedupe: &'a [u8; 16]) -> [&'a [u8]; 3] {
    [subject.as_bytes(), source.as_bytes(), dedupe]
}

pub fn profile<'a>(subject: &'a str, path: &'a str) -> [&'a [u8]; 2] {
    [subject.as_bytes(), path.as_bytes()]
}

pub fn identity<'a>(subject: &'a str, blind: &'a [u8; 32]) -> [&'a [u8]; 2] {
    [subject.as_bytes(), blind]
}

/// A subject's contribution to the shared recommendation model.
pub const CONTRIBUTION: &str = "contribution";

/// The associated data of [`CONTRIBUTION`]: the subject it belongs to.
pub fn contribution(subject: &str) -> [&[u8]; 1] {
    [subject.as_bytes()]
}
