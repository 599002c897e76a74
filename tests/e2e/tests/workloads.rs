//! Pods and their subresources (binding, eviction honouring PodDisruptionBudgets, status),
//! graceful deletion, field selectors, defaulting, immutability, Services and Leases.

use hakube_e2e::ControlPlane;
use serde_json::{json, Value};

const CREATE: &[&str] = &["create", "-f", "-"];

fn pod(name: &str, labels: Value) -> String {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name,"labels":labels},
        "spec":{"containers":[{"name":"app","image":"busybox:1.36","resources":{"requests":{"cpu":"100m"}}}]}})
    .to_string()
}

fn bind(cp: &ControlPlane, pod: &str, node: &str) -> (u16, Value) {
    let binding = json!({"apiVersion":"v1","kind":"Binding","metadata":{"name":pod},"target":{"apiVersion":"v1","kind":"Node","name":node}});
    cp.curl(
        "POST",
        &format!("/api/v1/namespaces/default/pods/{pod}/binding"),
        "application/json",
        Some(binding.to_string().as_bytes()),
    )
}

#[test]
fn pods_are_defaulted_bound_once_and_selected_by_node() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &pod("p1", json!({"app": "a"})));
    cp.ok_stdin(CREATE, &pod("p2", json!({"app": "a"})));
    let p = cp.get_json(&["pod", "p1"]);
    assert_eq!(p["spec"]["schedulerName"], "default-scheduler");
    assert_eq!(p["spec"]["restartPolicy"], "Always");
    assert_eq!(p["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        p["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "Burstable");
    let tolerations = p["spec"]["tolerations"].as_array().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 300));

    let (code, status) = bind(&cp, "p1", "node-1");
    assert_eq!(code, 201, "{status}");
    assert_eq!(status["status"], "Success");
    let bound = cp.get_json(&["pod", "p1"]);
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    let scheduled = bound["status"]["conditions"].as_array().unwrap();
    assert!(scheduled
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["status"] == "True"));
    let (code, status) = bind(&cp, "p1", "node-2");
    assert_eq!(code, 409);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("already assigned to node \"node-1\""),
        "{status}"
    );

    let on_node = cp.ok(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=node-1",
        "-o",
        "name",
    ]);
    assert_eq!(on_node.trim(), "pod/p1");
    let unbound = cp.ok(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=",
        "-o",
        "name",
    ]);
    assert_eq!(unbound.trim(), "pod/p2");

    // Most of a pod's spec is immutable; the image is not.
    let err = cp.fails(
        &[
            "patch",
            "pod",
            "p2",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"restartPolicy":"Never"}}"#,
        ],
        None,
    );
    assert!(err.contains("pod updates may not change fields"), "{err}");
    cp.ok(&[
        "patch",
        "pod",
        "p2",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/containers/0/image","value":"busybox:1.37"}]"#,
    ]);
    assert_eq!(
        cp.get_json(&["pod", "p2"])["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
}

#[test]
fn status_and_main_resource_ignore_each_others_fields() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &pod("p1", json!({})));
    let (code, _) = cp.merge_patch(
        "/api/v1/namespaces/default/pods/p1/status",
        r#"{"status":{"phase":"Running","podIP":"10.244.0.5"},"spec":{"activeDeadlineSeconds":5}}"#,
    );
    assert_eq!(code, 200);
    let p = cp.get_json(&["pod", "p1"]);
    assert_eq!(p["status"]["phase"], "Running");
    assert!(p["spec"].get("activeDeadlineSeconds").is_none());
    assert_eq!(p["metadata"]["generation"], 1);
    cp.ok(&[
        "patch",
        "pod",
        "p1",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"phase":"Failed"},"spec":{"activeDeadlineSeconds":5}}"#,
    ]);
    let p = cp.get_json(&["pod", "p1"]);
    assert_eq!(p["status"]["phase"], "Running");
    assert_eq!(p["spec"]["activeDeadlineSeconds"], 5);
    assert_eq!(p["metadata"]["generation"], 2);
    let by_phase = cp.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ]);
    assert_eq!(by_phase.trim(), "pod/p1");
}

#[test]
fn bound_pods_terminate_gracefully_until_the_kubelet_confirms() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &pod("p1", json!({})));
    assert_eq!(bind(&cp, "p1", "node-1").0, 201);
    cp.ok(&["delete", "pod", "p1", "--wait=false"]);
    let p = cp.get_json(&["pod", "p1"]);
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    // What the kubelet sends once the containers are gone.
    let (code, _) = cp.curl(
        "DELETE",
        "/api/v1/namespaces/default/pods/p1",
        "application/json",
        Some(br#"{"gracePeriodSeconds":0}"#),
    );
    assert_eq!(code, 200);
    assert!(cp.fails(&["get", "pod", "p1"], None).contains("NotFound"));
    // An unbound pod goes at once.
    cp.ok_stdin(CREATE, &pod("p2", json!({})));
    cp.ok(&["delete", "pod", "p2", "--wait=false"]);
    assert!(cp.fails(&["get", "pod", "p2"], None).contains("NotFound"));
}

#[test]
fn eviction_honours_pod_disruption_budgets() {
    let cp = ControlPlane::start();
    for name in ["web-1", "web-2"] {
        cp.ok_stdin(CREATE, &pod(name, json!({"app": "web"})));
        let (code, _) = cp.merge_patch(
            &format!("/api/v1/namespaces/default/pods/{name}/status"),
            r#"{"status":{"phase":"Running"}}"#,
        );
        assert_eq!(code, 200);
    }
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"web"},"spec":{"minAvailable":1,"selector":{"matchLabels":{"app":"web"}}}}).to_string(),
    );
    let evict = |name: &str| {
        let body = json!({"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":name}});
        cp.curl(
            "POST",
            &format!("/api/v1/namespaces/default/pods/{name}/eviction"),
            "application/json",
            Some(body.to_string().as_bytes()),
        )
    };
    // The budget's controller has not counted anything yet: no disruption allowed.
    let (code, status) = evict("web-1");
    assert_eq!(code, 429, "{status}");
    assert_eq!(
        status["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");
    // What the disruption controller would write: one disruption allowed.
    let (code, _) = cp.merge_patch("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web/status", r#"{"status":{"observedGeneration":1,"disruptionsAllowed":1,"currentHealthy":2,"desiredHealthy":1,"expectedPods":2}}"#);
    assert_eq!(code, 200);
    let (code, status) = evict("web-1");
    assert_eq!(code, 201, "{status}");
    assert!(cp
        .fails(&["get", "pod", "web-1"], None)
        .contains("NotFound"));
    let pdb = cp.get_json(&["pdb", "web"]);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["web-1"].is_string());
    // The budget is spent.
    assert_eq!(evict("web-2").0, 429);
    assert!(cp
        .ok(&["get", "pod", "web-2", "-o", "name"])
        .contains("web-2"));
}

#[test]
fn services_get_addresses_and_node_ports() {
    let cp = ControlPlane::start();
    let svc = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"port":80,"targetPort":8080}]}});
    cp.ok_stdin(CREATE, &svc.to_string());
    let s = cp.get_json(&["svc", "web"]);
    let ip = s["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.0.0.") && ip != "10.0.0.1", "{ip}");
    assert_eq!(s["spec"]["clusterIPs"], json!([ip]));
    let node_port = s["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port));
    assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
    // The address is immutable.
    let err = cp.fails(
        &[
            "patch",
            "svc",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"clusterIP":"10.0.0.77"}}"#,
        ],
        None,
    );
    assert!(
        err.contains("spec.clusterIP") && err.contains("field is immutable"),
        "{err}"
    );
    // Someone else asking for the same address is refused.
    let mut clash = svc.clone();
    clash["metadata"]["name"] = json!("clash");
    clash["spec"]["clusterIP"] = json!(ip);
    let err = cp.fails(CREATE, Some(&clash.to_string()));
    assert!(err.contains("provided IP is already allocated"), "{err}");
    let mut outside = clash.clone();
    outside["spec"]["clusterIP"] = json!("192.168.7.7");
    let err = cp.fails(CREATE, Some(&outside.to_string()));
    assert!(err.contains("not in the valid range"), "{err}");
}

#[test]
fn leases_support_leader_election_writes() {
    let cp = ControlPlane::start();
    let lease = json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"node-1","namespace":"kube-node-lease"},
        "spec":{"holderIdentity":"node-1","leaseDurationSeconds":40,"renewTime":"2026-01-01T00:00:00.000000Z"}});
    cp.ok_stdin(CREATE, &lease.to_string());
    let mut current = cp.get_json(&["lease", "-n", "kube-node-lease", "node-1"]);
    assert_eq!(current["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
    current["spec"]["renewTime"] = json!("2026-01-01T00:00:10.000000Z");
    let (code, renewed) = cp.curl(
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1",
        "application/json",
        Some(current.to_string().as_bytes()),
    );
    assert_eq!(code, 200, "{renewed}");
    assert_eq!(renewed["spec"]["renewTime"], "2026-01-01T00:00:10.000000Z");
    // A second candidate writing with the old resourceVersion loses.
    let (code, _) = cp.curl(
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1",
        "application/json",
        Some(current.to_string().as_bytes()),
    );
    assert_eq!(code, 409);
}
