//! HTTP handlers.

pub mod links;
pub mod qr;
pub mod redirect;
pub mod stats;
