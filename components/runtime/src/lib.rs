//! What every hakube control-plane component shares: upstream's leader election through a
//! `coordination.k8s.io/v1` Lease, the HTTPS `/healthz` + `/metrics` server, and building a
//! client from `--kubeconfig`. Components flatten [`ComponentArgs`] into their own flags.
#![forbid(unsafe_code)]

pub mod client;
pub mod leader_election;
pub mod options;
pub mod serving;

pub use options::{ComponentArgs, LeaderElectionArgs, ServingArgs};
