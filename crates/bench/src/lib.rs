//! Benchmarks and the fault suite of shortener-stack: a closed-loop HTTP load generator,
//! the baselines the services are compared against, and the servers/processes they run on.

pub mod baseline;
pub mod benches;
pub mod clicks;
pub mod faults;
pub mod loadgen;
pub mod outage;
pub mod procs;
pub mod results;
pub mod stack;
pub mod tansu;
pub mod wrk;
