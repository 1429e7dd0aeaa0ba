//! Keys: the master key that opens the vault ([`master`]) and the API keys brand systems call with
//! ([`api`]), each resolved to a catalog role.

pub mod api;
pub mod master;

pub use api::{Caller, CreateKeyError, authenticate, create_api_key};
