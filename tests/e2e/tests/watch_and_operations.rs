//! Watch semantics clients rely on (in-stream 410 after compaction, bookmarks, streaming lists,
//! selectors that stop matching, timeouts), dry runs, generateName, metrics, readiness against a
//! dead etcd, restarts, and graceful shutdown that ends open watches.

use std::time::Duration;

use hakube_e2e::{eventually, ControlPlane};
use serde_json::{json, Value};

const CREATE: &[&str] = &["create", "-f", "-"];

fn configmap(name: &str, labels: Value) -> String {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"labels":labels},"data":{"a":"b"}}).to_string()
}

fn list_rv(cp: &ControlPlane) -> String {
    let (_, list) = cp.curl(
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        None,
    );
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_version_older_than_the_history_is_an_in_stream_410() {
    // Two events of history: after three changes the first version is gone (and compacted).
    let cp = ControlPlane::start_with(&["--default-watch-cache-size=2"]);
    let old = list_rv(&cp);
    cp.ok_stdin(CREATE, &configmap("c1", json!({})));
    cp.ok(&["label", "cm", "c1", "x=y"]);
    cp.ok(&["label", "cm", "c1", "y=z"]);
    cp.etcd.compact();
    let (events, _) = cp.stream(
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old}"),
        5,
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    // A list newer than the compaction resumes fine.
    let fresh = list_rv(&cp);
    cp.ok(&["label", "cm", "c1", "z=1"]);
    let (events, _) = cp.stream(
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={fresh}&timeoutSeconds=2"),
        5,
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["z"], "1");
}

#[test]
fn watch_timeouts_end_the_stream_cleanly() {
    let cp = ControlPlane::start();
    let started = std::time::Instant::now();
    let (events, code) = cp.stream(
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        10,
    );
    assert_eq!(code, 0, "the server should end the stream itself");
    assert!(events.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn streaming_lists_end_with_the_initial_events_bookmark() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &configmap("c1", json!({})));
    cp.ok_stdin(CREATE, &configmap("c2", json!({})));
    let (events, _) = cp.stream(
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2",
        5,
    );
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["ADDED", "ADDED", "BOOKMARK"], "{events:?}");
    let bookmark = &events[2]["object"];
    assert_eq!(bookmark["kind"], "ConfigMap");
    assert_eq!(bookmark["apiVersion"], "v1");
    assert_eq!(
        bookmark["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(bookmark["metadata"]["resourceVersion"].as_str().is_some());
    // Without NotOlderThan a streaming list is refused rather than hanging the client.
    let (code, _) = cp.curl(
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true",
        "application/json",
        None,
    );
    assert_eq!(code, 422);
}

#[test]
fn objects_that_stop_matching_a_selector_are_deleted_from_the_watch() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &configmap("c1", json!({"team": "a"})));
    let rv = list_rv(&cp);
    cp.ok(&["label", "cm", "c1", "team=b", "--overwrite"]);
    cp.ok(&["label", "cm", "c1", "team=a", "--overwrite"]);
    let (events, _) = cp.stream(
        &format!("/api/v1/namespaces/default/configmaps?watch=true&labelSelector=team%3Da&resourceVersion={rv}&timeoutSeconds=2"),
        5,
    );
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["DELETED", "ADDED"], "{events:?}");
}

#[test]
fn dry_runs_persist_nothing() {
    let cp = ControlPlane::start();
    let out = cp.ok_stdin(
        &[
            "create",
            "--validate=false",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ],
        &configmap("ghost", json!({})),
    );
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["metadata"]["name"], "ghost");
    assert!(cp.fails(&["get", "cm", "ghost"], None).contains("NotFound"));
    cp.ok_stdin(CREATE, &configmap("real", json!({})));
    let rv = cp.get_json(&["cm", "real"])["metadata"]["resourceVersion"].clone();
    cp.ok(&["label", "cm", "real", "x=y", "--dry-run=server"]);
    cp.ok(&["delete", "cm", "real", "--dry-run=server"]);
    let after = cp.get_json(&["cm", "real"]);
    assert_eq!(after["metadata"]["resourceVersion"], rv);
    assert!(after["metadata"]
        .get("labels")
        .is_none_or(|l| l.get("x").is_none()));
}

#[test]
fn generate_name_makes_unique_names() {
    let cp = ControlPlane::start();
    let body = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"job-"}})
        .to_string();
    let mut names = Vec::new();
    for _ in 0..3 {
        let (code, created) = cp.curl(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            Some(body.as_bytes()),
        );
        assert_eq!(code, 201, "{created}");
        let name = created["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("job-") && name.len() == 9, "{name}");
        names.push(name);
    }
    names.dedup();
    assert_eq!(names.len(), 3);
}

#[test]
fn metrics_count_requests_watches_and_etcd_latency() {
    let cp = ControlPlane::start();
    cp.ok(&["get", "cm"]);
    cp.fails(&["get", "cm", "missing"], None);
    let admin = cp.admin_kubeconfig();
    let mut watch = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &admin)
        .args(["get", "cm", "-w"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut text = String::new();
    eventually(
        "the watch shows in the metrics",
        Duration::from_secs(15),
        || {
            let (code, body) = cp.curl("GET", "/metrics", "application/json", None);
            text = body.as_str().unwrap_or("").to_string();
            code == 200
                && text.lines().any(|l| {
                    l.starts_with("apiserver_longrunning_requests{verb=\"WATCH\"")
                        && l.contains("resource=\"configmaps\"")
                        && l.ends_with(" 1")
                })
        },
    );
    let _ = watch.kill();
    let _ = watch.wait();
    let has = |needle: &str| {
        text.lines()
            .any(|l| l.contains(needle) && !l.starts_with('#'))
    };
    assert!(
        has(r#"apiserver_request_total{verb="LIST",group="",version="v1",resource="configmaps""#),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("apiserver_request_total{verb=\"GET\"")
                && l.contains("resource=\"configmaps\"")
                && l.contains("code=\"404\"")),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("apiserver_longrunning_requests{verb=\"WATCH\"")
                && l.contains("resource=\"configmaps\"")
                && l.ends_with(" 1")
        ),
        "{text}"
    );
    assert!(has("apiserver_request_duration_seconds_bucket"), "{text}");
    assert!(
        has(r#"etcd_request_duration_seconds_count{operation="list"}"#),
        "{text}"
    );
}

#[test]
fn readiness_follows_etcd_and_data_survives_restarts() {
    let mut cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &configmap("keep", json!({})));
    cp.restart_apiserver();
    assert_eq!(cp.get_json(&["cm", "keep"])["data"]["a"], "b");
    assert_eq!(
        cp.get_json(&["svc", "kubernetes"])["spec"]["clusterIP"],
        "10.0.0.1"
    );
    // etcd dies: readiness fails with the reason, liveness does not.
    let _ = cp.etcd.child.kill();
    let _ = cp.etcd.child.wait();
    let (code, body) = cp.curl_as(&[], "GET", "/readyz", "text/plain", None);
    assert_eq!(code, 500, "{body}");
    assert!(body.as_str().unwrap_or("").contains("etcd"), "{body}");
    assert_eq!(cp.curl_as(&[], "GET", "/livez", "text/plain", None).0, 200);
}

#[test]
fn shutdown_ends_open_watches_and_exits_cleanly() {
    let mut cp = ControlPlane::start();
    let url = format!("{}/api/v1/namespaces/default/configmaps?watch=true", cp.url);
    let watcher = std::process::Command::new("curl")
        .args([
            "-sN",
            "--http1.1",
            "--max-time",
            "30",
            "--cacert",
            &cp.path("ca.crt"),
        ])
        .args([
            "--cert",
            &cp.path("admin.crt"),
            "--key",
            &cp.path("admin.key"),
            &url,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the watch is open", Duration::from_secs(15), || {
        cp.open_watches("configmaps") == 1
    });
    let (clean, took) = cp.terminate_apiserver();
    assert!(
        clean,
        "hakube-apiserver should exit 0 on SIGTERM:\n{}",
        cp.log()
    );
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    let out = watcher.wait_with_output().unwrap();
    // curl exits 0 when the server ends the stream (28 would mean it hit --max-time).
    assert_eq!(out.status.code(), Some(0));
}
