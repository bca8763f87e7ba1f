//! The benchmarks `shortener-bench` runs; each returns its summary rows and writes its JSON.

pub mod consumer;
pub mod operator;
pub mod redirect;
pub mod redirect_rules;
pub mod rpc;

use std::path::PathBuf;
use std::time::Duration;

/// Where a run reads binaries and writes logs and results.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
    pub results_dir: PathBuf,
    /// Recorded time of each load phase.
    pub duration: Duration,
    pub warmup: Duration,
}
