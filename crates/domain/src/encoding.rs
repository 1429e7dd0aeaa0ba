//! Bytes as lowercase hex, the one spelling of digests in text (the catalog's fingerprint, audit
//! hashes). A leaf: it depends on nothing, so any module may use it without a circle.

/// Lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
