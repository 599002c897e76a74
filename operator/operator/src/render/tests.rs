use super::*;
use hakube_operator_api::cluster::{ControlPlaneSpec, HostSelection, LoadBalancerSpec, Topology};
use hakube_operator_api::validation::{validate, InventoryHost};

use crate::pki::{ensure, PkiInputs, SecretsData};

fn spec() -> ClusterSpec {
    let mut spec = ClusterSpec {
        version: "v1".into(),
        topology: Topology::Stacked,
        control_plane: ControlPlaneSpec {
            replicas: 3,
            hosts: HostSelection {
                names: vec!["cp-1".into(), "cp-2".into(), "cp-3".into()],
                selector: None,
            },
        },
        etcd: Default::default(),
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
    };
    spec.components
        .apiserver
        .extra_args
        .insert("max-requests-inflight".into(), "800".into());
    spec.components
        .apiserver
        .extra_args
        .insert("secure-port".into(), "7443".into());
    spec
}

fn addresses() -> BTreeMap<String, IpAddr> {
    [
        ("cp-1", "10.77.0.11"),
        ("cp-2", "10.77.0.12"),
        ("cp-3", "10.77.0.13"),
    ]
    .iter()
    .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
    .collect()
}

fn paths(address: &str) -> HostPaths {
    HostPaths {
        address: address.parse().unwrap(),
        root: "/var/lib/hakube".into(),
    }
}

fn valid() -> ValidCluster {
    let inventory: Vec<InventoryHost> = ["cp-1", "cp-2", "cp-3", "lb"]
        .iter()
        .map(|n| InventoryHost {
            name: n.to_string(),
            labels: Default::default(),
        })
        .collect();
    validate(&spec(), &inventory, &["v1".to_string()]).unwrap()
}

fn pki() -> ClusterPki {
    let cp = addresses();
    let inputs = PkiInputs {
        cluster: "c",
        cluster_domain: "cluster.local",
        api_service_ip: "10.96.0.1".parse().unwrap(),
        endpoint: "https://10.77.0.10:6443",
        load_balancer: "10.77.0.10".parse().unwrap(),
        control_plane: &cp,
        etcd: &cp,
        validity: std::time::Duration::from_secs(86_400),
        renew_before: std::time::Duration::from_secs(3_600),
        stage: crate::pki::Stage::Steady,
    };
    ensure(&inputs, &SecretsData::new()).unwrap().0
}

fn flag<'a>(unit: &'a DesiredUnit, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    unit.args.iter().find_map(|a| a.strip_prefix(&prefix))
}

#[test]
fn etcd_members_form_one_cluster_over_tls() {
    let pki = pki();
    let plan = etcd_member(
        &spec(),
        "uid-1",
        "cp-2",
        &paths("10.77.0.12"),
        &EtcdHostStatus {
            host: "cp-2".into(),
            initial_cluster: initial_cluster(&addresses()),
            initial_cluster_state: "new".into(),
        },
        &pki,
    );
    let etcd = &plan.units[0];
    assert_eq!(etcd.program, Program::System("etcd".into()));
    assert_eq!(
        flag(etcd, "initial-cluster"),
        Some("cp-1=https://10.77.0.11:2380,cp-2=https://10.77.0.12:2380,cp-3=https://10.77.0.13:2380")
    );
    assert_eq!(flag(etcd, "name"), Some("cp-2"));
    assert_eq!(flag(etcd, "initial-cluster-token"), Some("uid-1"));
    assert_eq!(flag(etcd, "client-cert-auth"), Some("true"));
    assert_eq!(
        flag(etcd, "peer-cert-file"),
        Some("/var/lib/hakube/pki/etcd/peer.crt")
    );
    let keys: Vec<_> = plan
        .files
        .iter()
        .filter(|f| f.path.ends_with(".key"))
        .collect();
    assert!(keys.iter().all(|f| f.mode == 0o600) && keys.len() == 2);
    let server = plan
        .files
        .iter()
        .find(|f| f.path == "pki/etcd/server.crt")
        .unwrap();
    assert_eq!(
        server.content,
        pki.etcd_members["cp-2"].server.cert_pem.as_bytes()
    );
}

#[test]
fn extra_args_replace_rendered_flags_in_place_and_add_new_ones() {
    let bundle = vec![APISERVER_BINARY.to_string(), SCHEDULER_BINARY.to_string()];
    let plan = control_plane_host(
        &spec(),
        &valid(),
        "cp-1",
        &paths("10.77.0.11"),
        &["https://127.0.0.1:2379".into()],
        &pki(),
        &bundle,
    );
    let apiserver = plan.units.iter().find(|u| u.name == APISERVER).unwrap();
    assert_eq!(apiserver.args[1], "--secure-port=7443");
    assert_eq!(
        apiserver.args.last().unwrap(),
        "--max-requests-inflight=800"
    );
    assert_eq!(
        flag(apiserver, "service-cluster-ip-range"),
        Some("10.96.0.0/12")
    );
    assert_eq!(
        flag(apiserver, "etcd-servers"),
        Some("https://127.0.0.1:2379")
    );
    // The bundle has no controller-manager, so none is rendered.
    let names: Vec<&str> = plan.units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, [APISERVER, SCHEDULER]);
    let scheduler = &plan.units[1];
    assert_eq!(flag(scheduler, "leader-elect"), Some("true"));
    assert_eq!(
        flag(scheduler, "kubeconfig"),
        Some("/var/lib/hakube/scheduler.conf")
    );
    assert!(plan
        .files
        .iter()
        .any(|f| f.path == "scheduler.conf" && f.mode == 0o600));
}

#[test]
fn the_controller_manager_allocates_pod_cidrs_and_publishes_the_cluster_ca() {
    let bundle = vec![
        APISERVER_BINARY.to_string(),
        CONTROLLER_MANAGER_BINARY.to_string(),
    ];
    let plan = control_plane_host(
        &spec(),
        &valid(),
        "cp-1",
        &paths("10.77.0.11"),
        &["https://127.0.0.1:2379".into()],
        &pki(),
        &bundle,
    );
    let manager = plan
        .units
        .iter()
        .find(|u| u.name == CONTROLLER_MANAGER)
        .unwrap();
    assert_eq!(flag(manager, "allocate-node-cidrs"), Some("true"));
    assert_eq!(
        flag(manager, "cluster-cidr"),
        Some(valid().network.pod_cidr.to_string().as_str())
    );
    assert_eq!(
        flag(manager, "service-cluster-ip-range"),
        Some("10.96.0.0/12")
    );
    assert_eq!(
        flag(manager, "root-ca-file"),
        Some("/var/lib/hakube/pki/ca.crt")
    );
    assert!(plan.files.iter().any(|f| f.path == "pki/ca.crt"));
}

#[test]
fn haproxy_balances_every_apiserver_checked_on_readyz() {
    let plan = load_balancer(&spec(), &paths("10.77.0.10"), &addresses(), None);
    let config = String::from_utf8(plan.files[0].content.clone()).unwrap();
    assert!(config.contains("bind 10.77.0.10:6443\n"), "{config}");
    assert!(config.contains("option httpchk GET /readyz"), "{config}");
    assert!(
        config.contains("inter 1s downinter 200ms fall 2 rise 1"),
        "{config}"
    );
    for (name, ip) in addresses() {
        assert!(
            config.contains(&format!("server {name} {ip}:6443")),
            "{config}"
        );
    }
    assert_eq!(
        plan.units[0].args,
        ["-W", "-db", "-f", "/var/lib/hakube/haproxy/haproxy.cfg"]
    );
    assert_eq!(
        plan.units[0].readiness,
        Readiness::Tcp("10.77.0.10:6443".into())
    );
}

#[test]
fn two_load_balancers_run_keepalived_for_the_virtual_ip_beside_haproxy() {
    let vrrp = Vrrp {
        virtual_ip: "10.77.0.100".parse().unwrap(),
        interface: "eth0".into(),
        peer: "10.77.0.9".parse().unwrap(),
        priority: 150,
        router_id: 42,
    };
    let plan = load_balancer(&spec(), &paths("10.77.0.10"), &addresses(), Some(&vrrp));
    let haproxy = String::from_utf8(plan.files[0].content.clone()).unwrap();
    assert!(haproxy.contains("bind 0.0.0.0:6443\n"), "{haproxy}");
    let keepalived = plan
        .files
        .iter()
        .find(|f| f.path == "keepalived/keepalived.conf")
        .map(|f| String::from_utf8(f.content.clone()).unwrap())
        .unwrap();
    for line in [
        "virtual_router_id 42",
        "priority 150",
        "nopreempt",
        "interface eth0",
        "unicast_src_ip 10.77.0.10",
        "10.77.0.9",
        "10.77.0.100/32 dev eth0",
        "/dev/tcp/10.77.0.10/6443",
    ] {
        assert!(keepalived.contains(line), "{line}: {keepalived}");
    }
    let unit = plan.units.iter().find(|u| u.name == KEEPALIVED).unwrap();
    assert_eq!(unit.program, Program::System("keepalived".into()));
    assert!(unit
        .args
        .contains(&"--use-file=/var/lib/hakube/keepalived/keepalived.conf".to_string()));
    assert_eq!(unit.readiness, Readiness::Running);
}

#[test]
fn a_unit_is_restarted_by_changes_to_the_files_it_reads_only() {
    let bundle = vec![APISERVER_BINARY.to_string(), SCHEDULER_BINARY.to_string()];
    let render = |pki: &ClusterPki| {
        control_plane_host(
            &spec(),
            &valid(),
            "cp-1",
            &paths("10.77.0.11"),
            &["https://127.0.0.1:2379".into()],
            pki,
            &bundle,
        )
    };
    let before_pki = pki();
    let before = render(&before_pki);
    let unit =
        |plan: &HostPlan, name: &str| plan.units.iter().find(|u| u.name == name).cloned().unwrap();
    let digest =
        |plan: &HostPlan, name: &str| plan.inputs_digest(&unit(plan, name), "/var/lib/hakube");
    assert_eq!(
        digest(&before, APISERVER),
        digest(&render(&before_pki), APISERVER)
    );
    assert_ne!(digest(&before, APISERVER), digest(&before, SCHEDULER));

    let mut renewed = before_pki.clone();
    renewed
        .apiservers
        .get_mut("cp-1")
        .unwrap()
        .cert_pem
        .push('\n');
    let after = render(&renewed);
    assert_ne!(digest(&before, APISERVER), digest(&after, APISERVER));
    assert_eq!(digest(&before, SCHEDULER), digest(&after, SCHEDULER));
}
