//! The samples under `config/samples/` are valid objects of these types, and validation judges
//! them as their comments say, against the local-mode host inventory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hakube_operator_api::validation::{validate, InventoryHost};
use hakube_operator_api::{Cluster, Host};
use serde::Deserialize;

fn sample(file: &str) -> String {
    let path = manifest_dir().join("../../config/samples").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn inventory() -> Vec<InventoryHost> {
    serde_norway::Deserializer::from_str(&sample("hosts-local.yaml"))
        .map(|doc| {
            let host = Host::deserialize(doc).unwrap();
            InventoryHost {
                name: host.metadata.name.unwrap(),
                labels: host.metadata.labels.unwrap_or_default(),
            }
        })
        .collect()
}

fn cluster(file: &str) -> Cluster {
    serde_norway::from_str(&sample(file)).unwrap()
}

const VERSIONS: [&str; 1] = ["v1.33.0-local"];

fn versions() -> Vec<String> {
    VERSIONS.iter().map(|v| v.to_string()).collect()
}

#[test]
fn the_stacked_sample_is_three_control_plane_hosts_and_two_spares() {
    let valid = validate(
        &cluster("cluster-stacked.yaml").spec,
        &inventory(),
        &versions(),
    )
    .unwrap();
    assert_eq!(valid.placement.control_plane, ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(valid.placement.etcd, ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(valid.placement.control_plane_spares, ["cp-4", "cp-5"]);
    assert_eq!(valid.placement.etcd_spares, ["cp-4", "cp-5"]);
    assert_eq!(valid.placement.load_balancers, ["lb"]);
}

#[test]
fn the_external_sample_has_etcd_hosts_of_its_own() {
    let valid = validate(
        &cluster("cluster-external.yaml").spec,
        &inventory(),
        &versions(),
    )
    .unwrap();
    assert_eq!(valid.placement.etcd, ["etcd-1", "etcd-2", "etcd-3"]);
    assert_eq!(valid.placement.control_plane, ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(valid.placement.etcd_spares, ["etcd-4", "etcd-5"]);
    assert_eq!(valid.placement.control_plane_spares, ["cp-4", "cp-5"]);
}

#[test]
fn the_two_load_balancer_sample_shares_a_virtual_ip() {
    let valid = validate(
        &cluster("cluster-two-load-balancers.yaml").spec,
        &inventory(),
        &versions(),
    )
    .unwrap();
    assert_eq!(valid.placement.load_balancers, ["lb", "lb-2"]);
    assert_eq!(
        valid.placement.virtual_ip,
        Some("10.77.0.100".parse().unwrap())
    );
}

#[test]
fn the_invalid_sample_is_invalid_for_each_reason_it_gives() {
    let invalid = validate(
        &cluster("cluster-invalid.yaml").spec,
        &inventory(),
        &versions(),
    )
    .unwrap_err();
    let fields: BTreeMap<&str, &str> = invalid
        .0
        .iter()
        .map(|e| (e.field.as_str(), e.message.as_str()))
        .collect();
    assert!(fields["spec.controlPlane.replicas"].contains("even number"));
    assert!(
        fields["spec.controlPlane.hosts.names"].contains("already used by spec.loadBalancer.host")
    );
    assert!(fields["spec.network.serviceCIDR"].contains("overlaps"));
}

/// This crate's directory, read at run time: cargo reuses test binaries between checkouts that
/// share a target directory, so the compile-time value may name another checkout.
fn manifest_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
}
