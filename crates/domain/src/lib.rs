//! Tactful's domain: the catalog, the taxonomy, the tracking protocol, minimization and identity
//! rules. Everything here is pure: no files, sockets, clocks or databases, so every decision can be
//! tested exhaustively and every backend makes the same ones.

pub mod audit;
pub mod bounds;
pub mod catalog;
pub mod consent;
pub mod encoding;
pub mod fides;
pub mod iab;
pub mod identity;
pub mod merkle;
pub mod minimize;
pub mod notice;
pub mod period;
pub mod policy;
pub mod receipt;
pub mod request;
pub mod retention;
pub mod secret;
pub mod segment;
pub mod taxonomy;
