//! Corners a review of the server against upstream turned up: verbs a path does not serve,
//! escaped names, empty budget selectors, name selectors across namespaces, watches whose
//! client hangs up, API servers starting together on a fresh etcd, and an API server starting
//! before its etcd.

use std::process::Command;
use std::time::Duration;

use hakube_e2e::{eventually, ControlPlane};
use serde_json::json;

const CREATE: &[&str] = &["create", "-f", "-"];

fn pod(name: &str) -> String {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name},"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}).to_string()
}

#[test]
fn paths_serve_only_their_verbs() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &pod("p"));
    // binding is create-only: no moving a pod by PATCH.
    let (code, status) = cp.merge_patch(
        "/api/v1/namespaces/default/pods/p/binding",
        r#"{"spec":{"nodeName":"elsewhere"}}"#,
    );
    assert_eq!(code, 405, "{status}");
    assert_eq!(status["reason"], "MethodNotAllowed");
    assert!(cp.get_json(&["pod", "p"])["spec"].get("nodeName").is_none());
    // All-namespaces paths only list and watch.
    assert_eq!(
        cp.curl("DELETE", "/api/v1/pods", "application/json", None)
            .0,
        405
    );
    assert_eq!(
        cp.curl(
            "POST",
            "/api/v1/configmaps",
            "application/json",
            Some(b"{}")
        )
        .0,
        405
    );
    // Namespaces cannot all be deleted at once.
    assert_eq!(
        cp.curl("DELETE", "/api/v1/namespaces", "application/json", None)
            .0,
        405
    );
    assert_eq!(cp.get_json(&["ns", "default"])["status"]["phase"], "Active");
}

#[test]
fn escaped_names_in_paths_are_decoded() {
    let cp = ControlPlane::start();
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"system:reader"},"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]}).to_string(),
    );
    let (code, role) = cp.curl(
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Areader",
        "application/json",
        None,
    );
    assert_eq!(code, 200, "{role}");
    assert_eq!(role["metadata"]["name"], "system:reader");
}

#[test]
fn an_empty_budget_selector_protects_every_pod() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &pod("p"));
    let (code, _) = cp.merge_patch(
        "/api/v1/namespaces/default/pods/p/status",
        r#"{"status":{"phase":"Running"}}"#,
    );
    assert_eq!(code, 200);
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"all"},"spec":{"maxUnavailable":0,"selector":{}}}).to_string(),
    );
    let body =
        json!({"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p"}}).to_string();
    let (code, status) = cp.curl(
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        "application/json",
        Some(body.as_bytes()),
    );
    assert_eq!(code, 429, "{status}");
}

#[test]
fn name_selectors_work_across_namespaces() {
    let cp = ControlPlane::start();
    cp.ok(&["create", "configmap", "shared", "-n", "kube-system"]);
    let out = cp.ok(&[
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.name=shared",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "configmap/shared");
}

#[test]
fn a_watch_whose_client_hangs_up_is_closed() {
    let cp = ControlPlane::start();
    let gauge = || cp.open_watches("configmaps");
    let mut watch = std::process::Command::new("kubectl")
        .env("KUBECONFIG", cp.admin_kubeconfig())
        .args(["get", "cm", "-w"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the watch is open", Duration::from_secs(10), || {
        gauge() == 1
    });
    let _ = watch.kill();
    let _ = watch.wait();
    // Nothing changes in configmaps, yet the server notices the hang-up.
    eventually("the watch is closed", Duration::from_secs(10), || {
        gauge() == 0
    });
}

#[test]
fn serves_http2_and_http1() {
    let cp = ControlPlane::start();
    for (flag, expected) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_version}", flag])
            .args([
                "--cacert",
                &cp.path("ca.crt"),
                "--cert",
                &cp.path("admin.crt"),
                "--key",
                &cp.path("admin.key"),
            ])
            .arg(format!("{}/api/v1/namespaces", cp.url))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
}

/// Five API servers started at once on a fresh etcd (hosts of a new cluster coming up) race to
/// create the `kubernetes` Service; the losers' creates fail allocating its address, not as
/// duplicates. Each must take the other's Service and keep serving.
#[test]
fn api_servers_starting_together_share_the_default_objects() {
    let (cp, mut others) = ControlPlane::start_together(&[], 4);
    for (port, child) in &mut others {
        assert!(
            child.try_wait().expect("the process state").is_none(),
            "the API server on {port} exited"
        );
    }
    let services = cp.get_json(&["services", "-n", "default"]);
    let names: Vec<&str> = services["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["kubernetes"]);
    // Each registers in the `kubernetes` endpoints; racing first writes are retried, not lost
    // until the next reconcile (10 s later).
    eventually(
        "every API server in the kubernetes endpoints",
        Duration::from_secs(5),
        || {
            let endpoints = cp.get_json(&["endpoints", "kubernetes", "-n", "default"]);
            let mut ips: Vec<String> = endpoints["subsets"][0]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["ip"].as_str().map(str::to_string))
                .collect();
            ips.sort();
            ips == [
                "127.0.0.1",
                "127.0.0.2",
                "127.0.0.3",
                "127.0.0.4",
                "127.0.0.5",
            ]
        },
    );
    for (_, child) in &mut others {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `(HTTP status, body)` of an unauthenticated GET of a health path, as a probe sends it.
fn probe(cp: &ControlPlane, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert", &cp.path("ca.crt")])
        .arg(format!("{}{path}", cp.url))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn an_api_server_started_before_its_etcd_is_live_not_ready_and_creates_its_defaults_once_etcd_answers(
) {
    let mut cp = ControlPlane::start_with_etcd_down();
    eventually(
        "/livez to answer while etcd is down",
        Duration::from_secs(30),
        || probe(&cp, "/livez").0 == 200,
    );
    let (code, body) = probe(&cp, "/readyz");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("[-]etcd failed"), "{body}");
    // It stays up, retrying, however long etcd takes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(probe(&cp, "/livez").0, 200, "{}", cp.log());
    assert!(
        cp.log().contains("creating the default objects"),
        "{}",
        cp.log()
    );

    cp.etcd.start_again();
    cp.wait_ready();
    for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        cp.ok(&["get", "namespace", namespace]);
    }
    let service = cp.get_json(&["-n", "default", "service", "kubernetes"]);
    assert_eq!(service["spec"]["ports"][0]["port"], 443, "{service}");
    cp.ok(&["get", "priorityclass", "system-node-critical"]);
    eventually("the kubernetes endpoints", Duration::from_secs(15), || {
        let endpoints = cp.get_json(&["-n", "default", "endpoints", "kubernetes"]);
        endpoints["subsets"][0]["addresses"][0]["ip"].is_string()
    });
}
