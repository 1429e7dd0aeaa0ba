//! What a catalog path is made of. The catalog owns the rule, since it refuses paths that break it;
//! minimization applies the same rule to the keys of incoming events.

/// Whether a key looks like a field name rather than data: letters, digits, `_`, `-`, `$`, starting
/// with a letter, `_` or `$`, short, and without a long run of digits (a card or phone number).
pub fn looks_like_field_name(segment: &str) -> bool {
    let digits_in_a_row = segment.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
    !segment.is_empty()
        && segment.len() <= 48
        && segment.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        && digits_in_a_row < 5
}
