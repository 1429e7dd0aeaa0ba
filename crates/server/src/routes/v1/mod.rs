//! Routes under `/v1`.

pub mod audit;
pub mod catalog;
pub mod consents;
pub mod insights;
pub mod me;
pub mod personalize;
pub mod projects;
pub mod requests;
pub mod subjects;
pub mod tracking;
