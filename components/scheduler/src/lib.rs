//! hakube-scheduler: binds pending pods to nodes. The algorithm (`core`) is pure; the rest
//! watches the API server, runs the queue, binds, and reports.
#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod metrics;
pub mod options;
pub mod scheduler;

pub use options::Options;
pub use scheduler::{run, SchedulerError};
