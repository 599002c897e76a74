//! hakube-operator: reconciles `Cluster` objects into running HA control planes on the hosts
//! their spec names, through each host's hakube-hostd. The decisions are pure (`render`,
//! `pki`, `plan`); the reconciler reads the world, asks them for the next step, takes it and
//! reports status.
#![forbid(unsafe_code)]

pub mod pki;
pub mod plan;
pub mod render;
