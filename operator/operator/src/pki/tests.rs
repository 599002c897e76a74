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
    let (pki, changes) = ensure_in(Stage::Steady, control_plane, existing, renew_before);
    assert!(changes.removed.is_empty());
    (pki, changes.written)
}

fn ensure_in(
    stage: Stage,
    control_plane: &BTreeMap<String, IpAddr>,
    existing: &SecretsData,
    renew_before: Duration,
) -> (ClusterPki, PkiChanges) {
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
        stage,
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
    assert_eq!(pki.ca_bundle, first_pki.ca_bundle);
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

/// The certificates in a PEM bundle.
fn bundle(pem: &str) -> Vec<openssl::x509::X509> {
    openssl::x509::X509::stack_from_pem(pem.as_bytes()).unwrap()
}

fn signed_by(cert_pem: &str, ca: &openssl::x509::X509) -> bool {
    let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).unwrap();
    cert.verify(&ca.public_key().unwrap()).unwrap()
}

fn apply(mut secrets: SecretsData, changes: PkiChanges) -> SecretsData {
    secrets.extend(changes.written);
    for name in changes.removed {
        secrets.remove(&name);
    }
    secrets
}

#[test]
fn a_staged_rotation_trusts_both_then_signs_with_the_new_then_drops_the_old() {
    let cp = hosts(&[("cp-1", "10.77.0.11")]);
    let (steady, first) = ensure_with(&cp, &SecretsData::new(), DAY);
    let old = bundle(&steady.ca_bundle);
    assert_eq!(old.len(), 1);

    // Trust both: next authorities made, nothing re-issued.
    let trusting = Stage::BothTrusted {
        sign_with_next: false,
    };
    let (pki, changes) = ensure_in(trusting, &cp, &first, DAY);
    let written: Vec<&str> = changes.written.keys().map(String::as_str).collect();
    assert_eq!(
        written,
        [
            "c-admin-kubeconfig",
            "c-ca-next",
            "c-etcd-ca-next",
            "c-front-proxy-ca-next"
        ]
    );
    let both = bundle(&pki.ca_bundle);
    assert_eq!(both.len(), 2);
    assert_eq!(both[0].to_pem().unwrap(), old[0].to_pem().unwrap());
    assert_eq!(bundle(&pki.etcd_ca_bundle).len(), 2);
    assert_eq!(bundle(&pki.front_proxy_ca_bundle).len(), 2);
    assert_eq!(pki.apiservers, steady.apiservers);
    assert!(pki.admin_kubeconfig.contains(&base64_of(&pki.ca_bundle)));
    let secrets = apply(first, changes);
    let (again, changes) = ensure_in(trusting, &cp, &secrets, DAY);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(again, pki);

    // Sign with the new: every leaf re-issued by the next authorities, both still trusted.
    let reissuing = Stage::BothTrusted {
        sign_with_next: true,
    };
    let (pki, changes) = ensure_in(reissuing, &cp, &secrets, DAY);
    assert!(changes.removed.is_empty());
    assert!(!changes.written.contains_key("c-ca") && !changes.written.contains_key("c-sa"));
    let next_etcd = bundle(&pki.etcd_ca_bundle)[1].clone();
    assert!(signed_by(&pki.apiservers["cp-1"].cert_pem, &both[1]));
    assert!(signed_by(&pki.apiserver_kubelet_client.cert_pem, &both[1]));
    assert!(signed_by(
        &pki.etcd_members["cp-1"].peer.cert_pem,
        &next_etcd
    ));
    assert!(signed_by(&pki.etcd_healthcheck_client.cert_pem, &next_etcd));
    assert_eq!(bundle(&pki.ca_bundle).len(), 2);
    let secrets = apply(secrets, changes);

    // Drop the old: the next authorities become the only ones, their Secrets folded back.
    let (pki, changes) = ensure_in(Stage::Promote, &cp, &secrets, DAY);
    assert_eq!(
        changes.removed,
        ["c-ca-next", "c-etcd-ca-next", "c-front-proxy-ca-next"]
    );
    let only = bundle(&pki.ca_bundle);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].to_pem().unwrap(), both[1].to_pem().unwrap());
    assert!(signed_by(&pki.apiservers["cp-1"].cert_pem, &only[0]));
    let secrets = apply(secrets, changes);
    // A second pass (a reconcile after the promotion) and the steady state change nothing.
    let (promoted_again, changes) = ensure_in(Stage::Promote, &cp, &secrets, DAY);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(promoted_again, pki);
    let (_, changes) = ensure_in(Stage::Steady, &cp, &secrets, DAY);
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn the_steady_state_removes_a_next_authority_left_behind() {
    let cp = hosts(&[("cp-1", "10.77.0.11")]);
    let (_, first) = ensure_with(&cp, &SecretsData::new(), DAY);
    let trusting = Stage::BothTrusted {
        sign_with_next: false,
    };
    let (_, changes) = ensure_in(trusting, &cp, &first, DAY);
    let secrets = apply(first, changes);
    let (_, changes) = ensure_in(Stage::Steady, &cp, &secrets, DAY);
    assert_eq!(
        changes.removed,
        ["c-ca-next", "c-etcd-ca-next", "c-front-proxy-ca-next"]
    );
}

fn base64_of(text: &str) -> String {
    openssl::base64::encode_block(text.as_bytes())
}
