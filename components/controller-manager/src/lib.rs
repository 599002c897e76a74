//! hakube-controller-manager: the core control loops (node lifecycle, workloads, endpoints,
//! namespaces, garbage collection, ...) in one process. The leader among its replicas runs
//! the controllers that `--controllers` enables; each lives in its own module under
//! [`controllers`], with its decisions in pure functions tested without an API server.
#![forbid(unsafe_code)]

pub mod context;
pub mod controllers;
pub mod manager;
pub mod metrics;
pub mod options;

pub use manager::{run, ManagerError};
pub use options::Options;
