use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn hosts(names: &[(&str, &str)]) -> BTreeMap<String, IpAddr> {
    names.iter().map(|(n, a)| (n.to_string(), ip(a))).collect()
}

fn ensure_with(
    control_plane: &BTreeMap<String, IpAddr>,
    existing: &SecretsData,
    renew_before: Duration,
) -> (ClusterPki, SecretsData) {
    let inputs = PkiInputs {
        cluster: "c",
        cluster_domain: "cluster.local",
        api_service_ip: ip("10.96.0.1"),
        endpoint: "https://10.77.0.10:6443",
        load_balancer: ip("10.77.0.10"),
        control_plane,
        etcd: control_plane,
        validity: 30 * DAY,
        renew_before,
    };
    ensure(&inputs, existing).unwrap()
}

fn merged(mut base: SecretsData, changed: SecretsData) -> SecretsData {
    base.extend(changed);
    base
}

#[test]
fn a_new_cluster_gets_every_secret_and_a_second_pass_changes_nothing() {
    let cp = hosts(&[("cp-1", "10.77.0.11"), ("cp-2", "10.77.0.12")]);
    let (pki, changed) = ensure_with(&cp, &SecretsData::new(), DAY);
    let names: Vec<&str> = changed.keys().map(String::as_str).collect();
    for expected in [
        "c-ca",
        "c-etcd-ca",
        "c-front-proxy-ca",
        "c-sa",
        "c-etcd-cp-1",
        "c-etcd-cp-2",
        "c-apiserver-cp-1",
        "c-apiserver-cp-2",
        "c-apiserver-etcd-client",
        "c-apiserver-kubelet-client",
        "c-scheduler",
        "c-controller-manager",
        "c-admin",
        "c-admin-kubeconfig",
        "c-etcd-healthcheck-client",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(pki.earliest_expiry.is_some());
    let (again, changed_again) = ensure_with(&cp, &changed, DAY);
    assert!(changed_again.is_empty(), "{:?}", changed_again.keys());
    assert_eq!(again, pki);
}

#[test]
fn a_new_control_plane_host_reissues_serving_certificates_only() {
    let cp = hosts(&[("cp-1", "10.77.0.11")]);
    let (_, first) = ensure_with(&cp, &SecretsData::new(), DAY);
    let grown = hosts(&[("cp-1", "10.77.0.11"), ("cp-2", "10.77.0.12")]);
    let (_, changed) = ensure_with(&grown, &first, DAY);
    let names: Vec<&str> = changed.keys().map(String::as_str).collect();
    // cp-1's serving certificate must now name cp-2's address too.
    assert_eq!(
        names,
        ["c-apiserver-cp-1", "c-apiserver-cp-2", "c-etcd-cp-2"]
    );
}

#[test]
fn leaves_within_renew_before_are_reissued_and_cas_kept() {
    let cp = hosts(&[("cp-1", "10.77.0.11")]);
    let (first_pki, first) = ensure_with(&cp, &SecretsData::new(), DAY);
    let (pki, changed) = ensure_with(&cp, &first, 31 * DAY);
    assert!(!changed.contains_key("c-ca") && !changed.contains_key("c-sa"));
    assert!(changed.contains_key("c-apiserver-cp-1") && changed.contains_key("c-etcd-cp-1"));
    assert_eq!(pki.ca, first_pki.ca);
    assert_ne!(pki.apiservers["cp-1"], first_pki.apiservers["cp-1"]);
    let all = merged(first, changed);
    assert_eq!(
        all["c-apiserver-cp-1"]["tls.crt"],
        pki.apiservers["cp-1"].cert_pem
    );
}

#[test]
fn a_lost_ca_reissues_everything_it_signed() {
    let cp = hosts(&[("cp-1", "10.77.0.11")]);
    let (_, mut first) = ensure_with(&cp, &SecretsData::new(), DAY);
    first.remove("c-etcd-ca");
    let (_, changed) = ensure_with(&cp, &first, DAY);
    let names: Vec<&str> = changed.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "c-apiserver-etcd-client",
            "c-etcd-ca",
            "c-etcd-cp-1",
            "c-etcd-healthcheck-client"
        ]
    );
}

#[test]
fn kubeconfigs_point_components_at_their_local_apiserver_and_admins_at_the_endpoint() {
    let cp = hosts(&[("cp-1", "10.77.0.11")]);
    let (pki, _) = ensure_with(&cp, &SecretsData::new(), DAY);
    let server = |config: &str| {
        let v: serde_json::Value = serde_json::from_str(config).unwrap();
        v["clusters"][0]["cluster"]["server"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(server(&pki.scheduler_kubeconfig), "https://127.0.0.1:6443");
    assert_eq!(server(&pki.admin_kubeconfig), "https://10.77.0.10:6443");
}
