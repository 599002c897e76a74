//! What every hakube control-plane component shares: upstream's leader election through a
//! `coordination.k8s.io/v1` Lease, the HTTPS `/healthz` + `/metrics` server, building a
//! client from `--kubeconfig`, and client-go's token-bucket rate limit. Components flatten [`ComponentArgs`] into their own flags.
#![forbid(unsafe_code)]

pub mod client;
pub mod leader_election;
pub mod options;
pub mod serving;
pub mod token_bucket;

pub use options::{ComponentArgs, LeaderElectionArgs, ServingArgs};
