//! The `hakube.io/v1alpha1` API the operator serves: `Cluster` (a declared HA control plane)
//! and `Host` (the inventory), their CustomResourceDefinitions, and validation of a Cluster
//! spec as a pure function.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod host;
pub mod validation;

pub use cluster::{Cluster, ClusterSpec, ClusterStatus, Topology};
pub use host::{Host, HostSpec, HostStatus};

use kube::CustomResourceExt;

/// The CRDs as committed under `config/crd/`: file name and YAML.
pub fn crd_manifests() -> Result<Vec<(&'static str, String)>, serde_norway::Error> {
    Ok(vec![
        ("hakube.io_clusters.yaml", to_yaml(&Cluster::crd())?),
        ("hakube.io_hosts.yaml", to_yaml(&Host::crd())?),
    ])
}

fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, serde_norway::Error> {
    Ok(format!(
        "# Generated from operator/api by `make crds`; do not edit.\n{}",
        serde_norway::to_string(value)?
    ))
}
