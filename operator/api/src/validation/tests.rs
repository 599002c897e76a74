use super::*;
use crate::cluster::{AutoCompaction, ControlPlaneSpec, EtcdSpec, LoadBalancerSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

fn host(name: &str, role: &str) -> InventoryHost {
    InventoryHost {
        name: name.into(),
        labels: BTreeMap::from([("hakube.io/role".to_string(), role.to_string())]),
    }
}

fn inventory() -> Vec<InventoryHost> {
    vec![
        host("cp-1", "control-plane"),
        host("cp-2", "control-plane"),
        host("cp-3", "control-plane"),
        host("cp-4", "control-plane"),
        host("etcd-1", "etcd"),
        host("etcd-2", "etcd"),
        host("etcd-3", "etcd"),
        host("lb", "load-balancer"),
    ]
}

fn versions() -> Vec<String> {
    vec!["v1.33.0-hakube.1".into()]
}

fn names(names: &[&str]) -> HostSelection {
    HostSelection {
        names: names.iter().map(|n| n.to_string()).collect(),
        selector: None,
    }
}

fn role(role: &str) -> HostSelection {
    HostSelection {
        names: Vec::new(),
        selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "hakube.io/role".to_string(),
                role.to_string(),
            )])),
            match_expressions: None,
        }),
    }
}

fn stacked() -> ClusterSpec {
    ClusterSpec {
        version: "v1.33.0-hakube.1".into(),
        topology: Topology::Stacked,
        control_plane: ControlPlaneSpec {
            replicas: 3,
            hosts: role("control-plane"),
        },
        etcd: EtcdSpec::default(),
        load_balancer: LoadBalancerSpec {
            host: "lb".into(),
            hosts: Vec::new(),
            virtual_ip: None,
            port: 6443,
        },
        network: Default::default(),
        components: Default::default(),
        certificates: Default::default(),
        paused: false,
    }
}

fn external() -> ClusterSpec {
    let mut spec = stacked();
    spec.topology = Topology::External;
    spec.etcd.replicas = Some(3);
    spec.etcd.hosts = Some(role("etcd"));
    spec
}

fn errors(spec: &ClusterSpec) -> Vec<FieldError> {
    validate(spec, &inventory(), &versions())
        .expect_err("the spec is invalid")
        .0
}

fn fields(spec: &ClusterSpec) -> Vec<String> {
    errors(spec).into_iter().map(|e| e.field).collect()
}

#[test]
fn a_stacked_cluster_places_etcd_on_its_control_plane_and_keeps_spares() {
    let valid = validate(&stacked(), &inventory(), &versions()).unwrap();
    assert_eq!(valid.placement.control_plane, ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(valid.placement.etcd, valid.placement.control_plane);
    assert_eq!(valid.placement.load_balancers, ["lb"]);
    assert_eq!(valid.placement.control_plane_spares, ["cp-4"]);
    assert_eq!(valid.network.api_service_ip.to_string(), "10.96.0.1");
    assert_eq!(valid.network.dns_service_ip.to_string(), "10.96.0.10");
    assert_eq!(valid.certificate_validity, Duration::from_secs(8760 * 3600));
    assert_eq!(valid.renew_before, Duration::from_secs(720 * 3600));
}

#[test]
fn an_external_cluster_uses_its_own_etcd_hosts() {
    let valid = validate(&external(), &inventory(), &versions()).unwrap();
    assert_eq!(valid.placement.etcd, ["etcd-1", "etcd-2", "etcd-3"]);
    assert_eq!(valid.placement.control_plane, ["cp-1", "cp-2", "cp-3"]);
}

#[test]
fn even_stacked_replicas_are_refused_with_the_reason() {
    let mut spec = stacked();
    spec.control_plane.replicas = 2;
    let e = errors(&spec);
    assert_eq!(e[0].field, "spec.controlPlane.replicas");
    assert!(e[0].message.contains("even number"), "{}", e[0].message);
    spec.control_plane.replicas = 7;
    assert_eq!(fields(&spec), ["spec.controlPlane.replicas"]);
}

#[test]
fn unknown_versions_name_the_supported_ones() {
    let mut spec = stacked();
    spec.version = "v9".into();
    let e = errors(&spec);
    assert_eq!(
        e[0].to_string(),
        "spec.version: Unsupported value: \"v9\": supported values: \"v1.33.0-hakube.1\""
    );
}

#[test]
fn unknown_duplicate_and_doubly_used_hosts_are_refused() {
    let mut spec = stacked();
    spec.control_plane.hosts = names(&["cp-1", "cp-1", "ghost"]);
    let e = errors(&spec);
    assert!(e.iter().any(|e| e.message == "Duplicate value: \"cp-1\""));
    assert!(e
        .iter()
        .any(|e| e.message.contains("\"ghost\" is not in the inventory")));

    let mut spec = stacked();
    spec.control_plane.hosts = names(&["cp-1", "cp-2", "lb"]);
    let e = errors(&spec);
    assert!(e.iter().any(|e| e.field == "spec.controlPlane.hosts.names"
        && e.message.contains("already used by spec.loadBalancer.host")));

    let mut spec = external();
    spec.etcd.hosts = Some(names(&["etcd-1", "etcd-2", "cp-1"]));
    spec.control_plane.hosts = names(&["cp-1", "cp-2", "cp-3"]);
    let e = errors(&spec);
    assert!(e.iter().any(|e| e.field == "spec.controlPlane.hosts.names"
        && e.message
            .contains("\"cp-1\": host is already used by spec.etcd.hosts")));
}

#[test]
fn selectors_skip_taken_hosts_and_must_find_enough() {
    let mut spec = stacked();
    spec.control_plane.replicas = 5;
    let e = errors(&spec);
    assert_eq!(e[0].field, "spec.controlPlane.hosts");
    assert!(
        e[0].message.contains("4 host(s) available, 5 needed"),
        "{}",
        e[0].message
    );

    let mut spec = stacked();
    spec.control_plane.hosts = HostSelection {
        names: Vec::new(),
        selector: Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "hakube.io/role".into(),
                operator: "NotIn".into(),
                values: Some(vec!["etcd".into()]),
            }]),
        }),
    };
    let valid = validate(&spec, &inventory(), &versions()).unwrap();
    // The load balancer matches the selector but is taken.
    assert_eq!(valid.placement.control_plane, ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(valid.placement.control_plane_spares, ["cp-4"]);

    let mut spec = stacked();
    spec.control_plane.hosts.names = vec!["cp-1".into()];
    assert_eq!(fields(&spec), ["spec.controlPlane.hosts"]);
}

#[test]
fn topology_fields_belong_to_their_topology() {
    let mut spec = stacked();
    spec.etcd.replicas = Some(3);
    spec.etcd.hosts = Some(role("etcd"));
    assert_eq!(fields(&spec), ["spec.etcd.replicas", "spec.etcd.hosts"]);

    let mut spec = external();
    spec.etcd.replicas = None;
    spec.etcd.hosts = None;
    assert_eq!(fields(&spec), ["spec.etcd.replicas", "spec.etcd.hosts"]);

    let mut spec = external();
    spec.etcd.replicas = Some(4);
    assert_eq!(fields(&spec), ["spec.etcd.replicas"]);
}

#[test]
fn malformed_and_overlapping_ranges_are_refused() {
    let mut spec = stacked();
    spec.network.pod_cidr = "10.244.0.0/33".into();
    assert_eq!(fields(&spec), ["spec.network.podCIDR"]);

    let mut spec = stacked();
    spec.network.service_cidr = "10.96.0.1/12".into();
    let e = errors(&spec);
    assert!(
        e[0].message.contains("did you mean 10.96.0.0/12"),
        "{}",
        e[0].message
    );

    let mut spec = stacked();
    spec.network.service_cidr = "10.244.128.0/20".into();
    let e = errors(&spec);
    assert_eq!(e[0].field, "spec.network.serviceCIDR");
    assert!(e[0].message.contains("overlaps the pod range"));

    let mut spec = stacked();
    spec.network.dns_service_ip = Some("10.0.0.10".into());
    assert_eq!(fields(&spec), ["spec.network.dnsServiceIP"]);

    let mut spec = stacked();
    spec.network.cluster_domain = "Cluster_Local".into();
    assert_eq!(fields(&spec), ["spec.network.clusterDomain"]);
}

#[test]
fn durations_flags_and_etcd_settings_are_checked() {
    let mut spec = stacked();
    spec.certificates.renew_before = "9000h".into();
    assert_eq!(fields(&spec), ["spec.certificates.renewBefore"]);
    spec.certificates.validity = "a year".into();
    assert_eq!(fields(&spec), ["spec.certificates.validity"]);

    let mut spec = stacked();
    spec.certificates.authority_rotation = Some(String::new());
    assert_eq!(fields(&spec), ["spec.certificates.authorityRotation"]);
    spec.certificates.authority_rotation = Some("2026-11-22".into());
    assert!(validate(&spec, &inventory(), &versions()).is_ok());

    let mut spec = stacked();
    spec.components
        .apiserver
        .extra_args
        .insert("--v".into(), "2".into());
    assert_eq!(fields(&spec), ["spec.components.apiserver.extraArgs"]);

    let mut spec = stacked();
    spec.etcd.quota_backend_bytes = Some(0);
    spec.etcd.auto_compaction = Some(AutoCompaction {
        mode: AutoCompactionMode::Revision,
        retention: "1h".into(),
    });
    assert_eq!(
        fields(&spec),
        [
            "spec.etcd.quotaBackendBytes",
            "spec.etcd.autoCompaction.retention"
        ]
    );
}

#[test]
fn two_load_balancers_share_a_virtual_ip() {
    let mut spec = stacked();
    spec.load_balancer.host = String::new();
    spec.load_balancer.hosts = vec!["lb".into(), "lb-2".into()];
    spec.load_balancer.virtual_ip = Some("10.77.0.100".into());
    let mut inventory = inventory();
    inventory.push(host("lb-2", "load-balancer"));
    let fields = |spec: &ClusterSpec| -> Vec<String> {
        validate(spec, &inventory, &versions())
            .err()
            .map(|e| e.0.into_iter().map(|e| e.field).collect())
            .unwrap_or_default()
    };
    let valid = validate(&spec, &inventory, &versions()).unwrap();
    assert_eq!(valid.placement.load_balancers, ["lb", "lb-2"]);
    assert_eq!(
        valid.placement.virtual_ip,
        Some("10.77.0.100".parse().unwrap())
    );

    let mut no_vip = spec.clone();
    no_vip.load_balancer.virtual_ip = None;
    assert_eq!(fields(&no_vip), ["spec.loadBalancer.virtualIP"]);
    let mut bad_vip = spec.clone();
    bad_vip.load_balancer.virtual_ip = Some("10.77.0".into());
    assert_eq!(fields(&bad_vip), ["spec.loadBalancer.virtualIP"]);
    let mut one_with_vip = stacked();
    one_with_vip.load_balancer.virtual_ip = Some("10.77.0.100".into());
    assert_eq!(fields(&one_with_vip), ["spec.loadBalancer.virtualIP"]);
    let mut both = spec.clone();
    both.load_balancer.host = "lb".into();
    assert_eq!(fields(&both), ["spec.loadBalancer.hosts"]);
    let mut three = spec.clone();
    three.load_balancer.hosts.push("cp-4".into());
    assert_eq!(fields(&three), ["spec.loadBalancer.hosts"]);
    let mut twice = spec;
    twice.load_balancer.hosts = vec!["lb".into(), "lb".into()];
    assert_eq!(fields(&twice), ["spec.loadBalancer.hosts"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut spec = stacked();
    spec.version = "v0".into();
    spec.control_plane.replicas = 4;
    spec.load_balancer.host = "nowhere".into();
    spec.network.pod_cidr = "bad".into();
    assert_eq!(
        fields(&spec),
        [
            "spec.version",
            "spec.controlPlane.replicas",
            "spec.loadBalancer.host",
            "spec.network.podCIDR"
        ]
    );
}

#[test]
fn go_durations_parse() {
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("h").is_err());
    assert!(parse_duration("3d").is_err());
}
