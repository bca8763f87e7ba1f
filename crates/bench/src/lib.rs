//! Benchmarks and the fault suite of shortener-stack: a closed-loop HTTP load generator,
//! the baselines the services are compared against, and the servers/processes they run on.

pub mod baseline;
pub mod clicks;
pub mod loadgen;
pub mod results;
