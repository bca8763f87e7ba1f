//! Desired child objects of a ShortenerStack, built by pure functions of the spec.
//!
//! The reconciler applies what these return; the unit tests pin them field by field.

pub mod component;
pub mod configmap;
pub mod deployment;
pub mod env;
pub mod hash;
pub mod labels;
pub mod migration_job;
pub mod network_policy;
pub mod pdb;
pub mod pod;
pub mod pod_monitor;
pub mod service;

pub use component::Component;
