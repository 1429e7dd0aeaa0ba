//! Forwarding events to the brand's own tools (email tool, analytics pipeline, warehouse), each
//! receiving only what one of its purposes permits for that person when it is sent.

pub mod segment;
pub mod sink;
pub mod warehouse;
