//! HTTP handlers.

pub mod bulk;
pub mod links;
pub mod qr;
pub mod redirect;
pub mod stats;
