//! The HTTP API in-process (`tower::ServiceExt::oneshot`), in one test binary so the server links
//! once: the tracking protocol, the brand API, data-subject requests, and the OpenAPI document that
//! describes them.

mod access;
mod bounds;
mod common;
mod consent_strings;
mod console;
mod destinations;
mod doors;
mod forward_regulations;
mod forward_segment;
mod forward_warehouse;
mod forwarding;
mod identity;
mod insights;
mod limits;
mod me;
mod metrics;
mod openapi;
mod personalize;
mod receipts;
mod requests;
mod roles;
mod sdks;
mod sessions;
mod tracking;
