//! The operator's committed CRDs and samples on hakube-apiserver, through kubectl: the CRDs
//! become established, the samples apply unchanged, printer columns and the `hakube` category
//! work, status is a subresource, and objects the schema refuses get 422 with the field named.

use std::time::Duration;

use hakube_e2e::{eventually, repo_root, ControlPlane};

fn path(relative: &str) -> String {
    repo_root().join(relative).display().to_string()
}

#[test]
fn committed_crds_and_samples_are_served() {
    let cp = ControlPlane::start();
    cp.ok(&["apply", "-f", &path("config/crd")]);
    cp.ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=30s",
        "crd/clusters.hakube.io",
        "crd/hosts.hakube.io",
    ]);
    // Discovery can lag the Established condition by a moment in kubectl's cache.
    eventually(
        "the hakube.io resources in discovery",
        Duration::from_secs(10),
        || {
            cp.kubectl(&["api-resources", "--api-group=hakube.io"])
                .status
                .success()
        },
    );
    cp.ok(&["apply", "-f", &path("config/samples/hosts-local.yaml")]);
    cp.ok(&["apply", "-f", &path("config/samples/cluster-stacked.yaml")]);
    cp.ok(&["apply", "-f", &path("config/samples/cluster-external.yaml")]);

    let hosts = cp.ok(&["get", "hosts"]);
    assert!(hosts.starts_with("NAME"), "{hosts}");
    assert!(
        hosts.contains("ADDRESS") && hosts.contains("10.77.0.11"),
        "{hosts}"
    );
    let sample_hosts = std::fs::read_to_string(path("config/samples/hosts-local.yaml"))
        .expect("the hosts sample")
        .matches("kind: Host")
        .count();
    assert_eq!(hosts.lines().count(), sample_hosts + 1, "{hosts}");

    let clusters = cp.ok(&["get", "hkc"]);
    for column in [
        "PHASE",
        "VERSION",
        "TOPOLOGY",
        "ENDPOINT",
        "AVAILABLE",
        "AGE",
    ] {
        assert!(clusters.contains(column), "{column} missing: {clusters}");
    }
    assert!(
        clusters.contains("stacked") && clusters.contains("External"),
        "{clusters}"
    );
    let everything = cp.ok(&["get", "hakube"]);
    assert!(
        everything.contains("cluster.hakube.io/stacked")
            && everything.contains("host.hakube.io/cp-1"),
        "{everything}"
    );

    // Defaults from the schema are visible on read.
    let stacked = cp.get_json(&["cluster", "stacked"]);
    assert_eq!(stacked["spec"]["controlPlane"]["replicas"], 3);
    let external = cp.get_json(&["cluster", "external"]);
    assert_eq!(external["spec"]["loadBalancer"]["port"], 6443);

    // Status is a subresource: the main resource ignores it.
    cp.ok(&[
        "patch",
        "cluster",
        "stacked",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
    let read = cp.get_json(&["cluster", "stacked"]);
    assert!(read["status"]["phase"].is_null(), "{read}");
    cp.ok(&[
        "patch", "cluster", "stacked", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"phase":"Provisioning","etcdMembers":[{"name":"cp-1","host":"cp-1","healthy":true}]}}"#,
    ]);
    let read = cp.get_json(&["cluster", "stacked"]);
    assert_eq!(read["status"]["phase"], "Provisioning");
    assert_eq!(read["status"]["etcdMembers"][0]["healthy"], true);

    let wrong_type = cp.fails(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: hakube.io/v1alpha1\nkind: Cluster\nmetadata: {name: bad, namespace: default}\n\
             spec: {version: v1, controlPlane: {replicas: three, hosts: {names: [cp-1]}}, loadBalancer: {host: lb}}\n",
        ),
    );
    assert!(
        wrong_type.contains("spec.controlPlane.replicas"),
        "{wrong_type}"
    );
    let missing = cp.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: hakube.io/v1alpha1\nkind: Host\nmetadata: {name: nowhere}\nspec: {}\n"),
    );
    assert!(
        missing.contains("spec.address") && missing.contains("Required value"),
        "{missing}"
    );
}
