//! shortener-operator: reconciles `ShortenerStack` resources (see `crd`) into the
//! url-api, analytics-rpc and consumer workloads, their database migration Job and their
//! Kafka topics.

pub mod autoscaling;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod drift;
pub mod error;
pub mod events;
pub mod kafka_credentials;
pub mod leader;
pub mod metrics;
pub mod migration;
pub mod rbac;
pub mod reconcile;
pub mod resources;
pub mod scaling;
pub mod status;
pub mod topic;

#[cfg(test)]
mod test_support;

pub use crd::{ShortenerStack, ShortenerStackSpec, ShortenerStackStatus};
pub use error::Error;
