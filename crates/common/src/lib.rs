//! Code shared by the shortener-stack binaries (url-api, consumer, analytics-rpc, operator).

pub mod bots;
pub mod config;
pub mod db;
pub mod event;
pub mod event_batch;
pub mod geo;
pub mod health;
pub mod kafka;
pub mod privacy;
pub mod proto;
pub mod shutdown;
pub mod telemetry;
