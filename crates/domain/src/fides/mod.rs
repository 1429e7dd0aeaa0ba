//! Data maps exchanged with Fides: the catalog written as fideslang resources (an organization, a
//! system with one privacy declaration per purpose, a dataset with one field per property), and a
//! fideslang file read back as a catalog skeleton for `tactful catalog check` to explain.

mod export;
mod import;
mod yaml;

pub use export::export;
pub use import::{ImportError, Imported, import};

/// The fideslang data subject of everyone a catalog describes: the brand's customers.
const DATA_SUBJECT: &str = "customer";

/// The key in the dataset's `meta` that keeps each property's own retention (fideslang has a
/// retention period per privacy declaration, not per field), so a round trip keeps it exact.
const RETENTION_META: &str = "tactful_retention";

/// A fides key made from a name: lowercase letters, digits and `_` (fideslang allows these).
fn fides_key(name: &str) -> String {
    let mut key = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
        } else if !key.ends_with('_') && !key.is_empty() {
            key.push('_');
        }
    }
    let key = key.trim_end_matches('_').to_owned();
    if key.is_empty() { "tactful".to_owned() } else { key }
}

#[cfg(test)]
mod tests;
