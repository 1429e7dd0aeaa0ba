//! `tactful bench …`: benchmarks that print their figures beside a reference measured in the same
//! run, so a noisy machine shows in both.

pub mod access;
pub mod forward;
pub mod ingest;
pub mod insights;
pub mod personalize;
pub mod requests;
pub mod serving;
pub mod sign_in;

pub use access::{AccessArgs, access};
pub use forward::{ForwardArgs, forward};
pub use ingest::{IngestArgs, ingest};
pub use insights::{InsightsArgs, insights};
pub use personalize::{PersonalizeArgs, personalize};
pub use requests::{RequestsArgs, requests};
pub use serving::{ServingArgs, serving};
pub use sign_in::{SignInArgs, sign_in};
