//! Bytes as lowercase hex, the one spelling of digests in text (the catalog's fingerprint, audit
//! hashes). A leaf: it depends on nothing, so any module may use it without a circle.

/// Lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex, or `None` when it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_goes_there_and_back() {
        assert_eq!(super::hex(&[0, 171, 255]), "00abff");
        assert_eq!(super::unhex("00abFF"), Some(vec![0, 171, 255]));
        assert_eq!(super::unhex("0g"), None);
        assert_eq!(super::unhex("abc"), None);
        assert_eq!(super::unhex("é1"), None);
    }
}
