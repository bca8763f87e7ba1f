//! Holds no code: the crate exists for its end-to-end test in `tests/pipeline.rs`, which
//! runs url-api, the consumer and analytics-rpc together in one process.
