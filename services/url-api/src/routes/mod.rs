//! HTTP handlers.

pub mod bulk;
pub mod links;
pub mod orphans;
pub mod qr;
pub mod redirect;
pub mod stats;
