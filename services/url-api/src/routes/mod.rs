//! HTTP handlers.

pub mod links;
pub mod redirect;
