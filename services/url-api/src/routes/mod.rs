//! HTTP handlers.

pub mod links;
pub mod redirect;
pub mod stats;
