//! Routes under `/v1`.

pub mod projects;
pub mod tracking;
