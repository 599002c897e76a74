//! hakube-controller-manager as a process: `--controllers` selection, leader election between
//! replicas, `/healthz` and `/metrics`, and the per-namespace controllers (the `default`
//! ServiceAccount, the `kube-root-ca.crt` ConfigMap).

use std::process::Command;
use std::time::Duration;

use hakube_e2e::components::Component;
use hakube_e2e::{bin_dir, eventually, ControlPlane};

const WAIT: Duration = Duration::from_secs(30);

fn has(cp: &ControlPlane, args: &[&str]) -> bool {
    cp.kubectl(args).status.success()
}

#[test]
fn every_namespace_gets_a_default_service_account_and_the_root_ca() {
    let cp = ControlPlane::start();
    let ca = std::fs::read_to_string(cp.path("ca.crt")).expect("the cluster CA");
    let kcm = Component::start(
        &cp,
        "hakube-controller-manager",
        &[
            "--controllers",
            "serviceaccount,root-ca-cert-publisher",
            "--root-ca-file",
            &cp.path("ca.crt"),
        ],
    );
    cp.ok(&["create", "namespace", "team-a"]);
    eventually("the default ServiceAccount in team-a", WAIT, || {
        has(&cp, &["-n", "team-a", "get", "serviceaccount", "default"])
    });
    let root_ca = |cp: &ControlPlane| {
        cp.kubectl(&[
            "-n",
            "team-a",
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "json",
        ])
    };
    eventually("kube-root-ca.crt in team-a", WAIT, || {
        root_ca(&cp).status.success()
    });
    let config_map = cp.get_json(&["-n", "team-a", "configmap", "kube-root-ca.crt"]);
    assert_eq!(config_map["data"]["ca.crt"], ca.as_str());
    // Existing namespaces are covered too.
    assert!(has(
        &cp,
        &["-n", "default", "get", "serviceaccount", "default"]
    ));

    // Deleted or edited, both come back as they were.
    cp.ok(&["-n", "team-a", "delete", "serviceaccount", "default"]);
    cp.ok(&["-n", "team-a", "delete", "configmap", "kube-root-ca.crt"]);
    eventually("the default ServiceAccount recreated", WAIT, || {
        has(&cp, &["-n", "team-a", "get", "serviceaccount", "default"])
    });
    eventually("kube-root-ca.crt recreated", WAIT, || {
        root_ca(&cp).status.success()
    });
    cp.ok(&[
        "-n",
        "team-a",
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"tampered"}}"#,
    ]);
    eventually("kube-root-ca.crt corrected", WAIT, || {
        cp.get_json(&["-n", "team-a", "configmap", "kube-root-ca.crt"])["data"]["ca.crt"]
            == ca.as_str()
    });

    let metrics = kcm.get("/metrics");
    assert!(
        metrics.contains(r#"workqueue_adds_total{name="serviceaccount"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("leader_election_master_status 1"),
        "{metrics}"
    );
    assert_eq!(kcm.get("/healthz"), "ok");
}

#[test]
fn only_the_leader_acts_and_a_replica_takes_over_when_it_dies() {
    let cp = ControlPlane::start();
    let args = ["--controllers", "serviceaccount"];
    let mut first = Component::start(&cp, "hakube-controller-manager", &args);
    eventually("the first replica leads", WAIT, || first.is_leading());
    let second = Component::start(&cp, "hakube-controller-manager", &args);
    cp.ok(&["create", "namespace", "before"]);
    eventually("the leader serves the new namespace", WAIT, || {
        has(&cp, &["-n", "before", "get", "serviceaccount", "default"])
    });
    assert!(!second.is_leading(), "{}", second.log());
    assert!(second
        .get("/metrics")
        .contains("leader_election_master_status 0"));

    first.kill();
    eventually("the second replica takes over", WAIT, || {
        second.is_leading()
    });
    cp.ok(&["create", "namespace", "after"]);
    eventually("the new leader serves the next namespace", WAIT, || {
        has(&cp, &["-n", "after", "get", "serviceaccount", "default"])
    });
}

#[test]
fn unknown_controllers_are_refused_at_start() {
    let out = Command::new(bin_dir().join("hakube-controller-manager"))
        .args([
            "--controllers",
            "*,-no-such-controller",
            "--secure-port",
            "0",
        ])
        .output()
        .expect("hakube-controller-manager runs");
    assert!(!out.status.success());
    let stderr =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#""no-such-controller" is not in the list of known controllers"#),
        "{stderr}"
    );
}
