//! Helpers for integration tests. The servers are real: Postgres is the private cluster
//! `./scripts/test` starts (named by `TEST_DATABASE_URL`), brokers speak the Kafka
//! protocol over loopback TCP.

pub mod kafka;
pub mod postgres;
pub mod process;
pub mod tracing;
