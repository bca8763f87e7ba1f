//! Helpers for integration tests. The servers are real: Postgres is the private cluster
//! `./scripts/test` starts (named by `TEST_DATABASE_URL`), brokers speak the Kafka
//! protocol over loopback TCP. With the `kube` feature, `kube_api` is an in-memory
//! Kubernetes API server for controller tests. `tls` makes throwaway certificate
//! authorities.

pub mod kafka;
#[cfg(feature = "kube")]
pub mod kube_api;
pub mod postgres;
pub mod process;
pub mod tls;
pub mod tracing;
