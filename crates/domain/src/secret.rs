//! A wrapper for secrets (write keys, API keys, key material in text form) whose `Debug` and `Display`
//! never print the value, so a secret cannot reach a log line by accident.

use std::fmt;

/// A secret string. Read it with [`Secret::expose`]; formatting it prints `**redacted**`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call sites are easy to audit with `grep expose`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Secret(text.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("wk_live_abcdef");
        assert_eq!(format!("{secret}"), "**redacted**");
        assert_eq!(format!("{secret:?}"), "**redacted**");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(**redacted**)");
        assert_eq!(secret.expose(), "wk_live_abcdef");
    }
}
