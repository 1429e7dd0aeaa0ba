//! A Segment-protocol destination's deletion API (Segment's Public API or RudderStack's User
//! Suppression API), which the catalog may name so erasures actually delete there.

use crate::secret::Secret;

/// Whose deletion API a Segment-protocol destination's erasures are also sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegulationApi {
    /// Segment's Public API: `POST {url}/regulations` (`https://api.segmentapis.com`), Bearer token.
    Segment,
    /// RudderStack's User Suppression API: `POST {url}/v2/regulations` (`https://api.rudderstack.com`),
    /// Bearer token.
    RudderStack,
}

impl RegulationApi {
    /// The API as the catalog's `regulations_api` names it.
    pub fn parse(text: &str) -> Option<RegulationApi> {
        match text {
            "segment" => Some(RegulationApi::Segment),
            "rudderstack" => Some(RegulationApi::RudderStack),
            _ => None,
        }
    }
}

/// A pipeline's deletion API and the token it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regulations {
    pub api: RegulationApi,
    /// The API's base URL, without a trailing slash.
    pub url: String,
    pub token: Secret,
}
