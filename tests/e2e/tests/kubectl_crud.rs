//! kubectl against etcd + hakube-apiserver: the everyday verbs, output formats, conflicts,
//! deletion with finalizers, watches, describe with events, and bad input.

use std::time::Duration;

use hakube_e2e::{eventually, ControlPlane};
use serde_json::{json, Value};

// OpenAPI (and with it kubectl's client-side validation) arrives with the apply/OpenAPI issue.
const CREATE: &[&str] = &["create", "-f", "-"];

fn configmap(name: &str) -> String {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"labels":{"app":"demo"}},"data":{"a":"b"}})
        .to_string()
}

#[test]
fn create_get_list_in_every_output_format() {
    let cp = ControlPlane::start();
    assert_eq!(
        cp.ok_stdin(CREATE, &configmap("c1")).trim(),
        "configmap/c1 created"
    );
    let yaml = cp.ok(&["get", "cm", "c1", "-o", "yaml"]);
    assert!(yaml.contains("name: c1") && yaml.contains("a: b"), "{yaml}");
    let obj = cp.get_json(&["cm", "c1"]);
    assert_eq!(obj["data"]["a"], "b");
    assert_eq!(obj["metadata"]["generation"], 1);
    assert!(obj["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(obj["metadata"]["resourceVersion"].as_str().is_some());
    assert_eq!(cp.ok(&["get", "cm", "c1", "-o", "jsonpath={.data.a}"]), "b");
    assert_eq!(
        cp.ok(&["get", "cm", "-l", "app=demo", "-o", "name"]).trim(),
        "configmap/c1"
    );
    assert_eq!(
        cp.ok(&["get", "cm", "-l", "app notin (demo)", "-o", "name"])
            .trim(),
        ""
    );
    let list = cp.get_json(&["cm"]);
    assert_eq!(list["kind"], "List");
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["metadata"]["name"] == "c1"));
    // The system namespaces and the kubernetes Service exist from the start.
    let namespaces = cp.ok(&["get", "ns", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.contains(&format!("namespace/{ns}")),
            "{namespaces}"
        );
    }
    let svc = cp.get_json(&["svc", "kubernetes"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.0.0.1");
    let ep = cp.get_json(&["endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], cp.port);
}

#[test]
fn label_annotate_and_both_patch_types() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &configmap("c1"));
    cp.ok(&["label", "cm", "c1", "tier=web"]);
    cp.ok(&["annotate", "cm", "c1", "note=hello"]);
    cp.ok(&[
        "patch",
        "cm",
        "c1",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"c":"d","a":null}}"#,
    ]);
    cp.ok(&[
        "patch",
        "cm",
        "c1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/e","value":"f"}]"#,
    ]);
    let obj = cp.get_json(&["cm", "c1"]);
    assert_eq!(obj["metadata"]["labels"]["tier"], "web");
    assert_eq!(obj["metadata"]["annotations"]["note"], "hello");
    assert_eq!(obj["data"], json!({"c": "d", "e": "f"}));
    // A failing JSON patch test changes nothing.
    let err = cp.fails(
        &[
            "patch",
            "cm",
            "c1",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/data/c","value":"x"},{"op":"remove","path":"/data/c"}]"#,
        ],
        None,
    );
    assert!(err.contains("test"), "{err}");
    assert_eq!(cp.get_json(&["cm", "c1"])["data"]["c"], "d");
    // A resourceVersion in a patch is a precondition.
    let err = cp.fails(
        &[
            "patch",
            "cm",
            "c1",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"resourceVersion":"1"},"data":{"c":"x"}}"#,
        ],
        None,
    );
    assert!(err.contains("Conflict"), "{err}");
    assert_eq!(cp.get_json(&["cm", "c1"])["data"]["c"], "d");
    // A write that changes nothing keeps the resourceVersion.
    let rv = cp.get_json(&["cm", "c1"])["metadata"]["resourceVersion"].clone();
    cp.ok(&[
        "patch",
        "cm",
        "c1",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"c":"d"}}"#,
    ]);
    assert_eq!(
        cp.get_json(&["cm", "c1"])["metadata"]["resourceVersion"],
        rv
    );
}

#[test]
fn replace_conflicts_on_a_stale_resource_version() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &configmap("c1"));
    let stale = cp.ok(&["get", "cm", "c1", "-o", "json"]);
    cp.ok(&["label", "cm", "c1", "moved=on"]);
    let err = cp.fails(&["replace", "--validate=false", "-f", "-"], Some(&stale));
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );
    // The current version replaces fine and bumps generation for a data change.
    let mut current = cp.get_json(&["cm", "c1"]);
    current["data"]["a"] = json!("changed");
    cp.ok_stdin(
        &["replace", "--validate=false", "-f", "-"],
        &current.to_string(),
    );
    let after = cp.get_json(&["cm", "c1"]);
    assert_eq!(after["data"]["a"], "changed");
    assert_eq!(after["metadata"]["generation"], 2);
}

#[test]
fn delete_waits_for_finalizers() {
    let cp = ControlPlane::start();
    let mut cm: Value = serde_json::from_str(&configmap("held")).unwrap();
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    cp.ok_stdin(CREATE, &cm.to_string());
    cp.ok(&["delete", "cm", "held", "--wait=false"]);
    let marked = cp.get_json(&["cm", "held"]);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    // kubectl delete --wait blocks until the finalizer is gone.
    let admin = cp.admin_kubeconfig();
    let waiter = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &admin)
        .args(["delete", "cm", "held", "--timeout=30s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    cp.ok(&[
        "patch",
        "cm",
        "held",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = cp.fails(&["get", "cm", "held"], None);
    assert!(err.contains("NotFound"), "{err}");
    // Without finalizers a delete is immediate.
    cp.ok_stdin(CREATE, &configmap("plain"));
    assert_eq!(
        cp.ok(&["delete", "cm", "plain"]).trim(),
        "configmap \"plain\" deleted"
    );
}

#[test]
fn get_watch_shows_adds_changes_and_deletes() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &configmap("before"));
    let admin = cp.admin_kubeconfig();
    let mut watcher = std::process::Command::new("timeout")
        .args([
            "15",
            "kubectl",
            "get",
            "cm",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .env("KUBECONFIG", &admin)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Changes start once the watch has shown the existing object, however slow the machine.
    let mut reader = std::io::BufReader::new(watcher.stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains("\"before\"") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            panic!("kubectl get -w ended early: {text}");
        }
        text.push_str(&line);
    }
    cp.ok_stdin(CREATE, &configmap("w1"));
    cp.ok(&[
        "patch",
        "cm",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"a":"z"}}"#,
    ]);
    cp.ok(&["delete", "cm", "w1"]);
    // The DELETED event is the last; read until it arrives, then stop kubectl.
    while !text.contains("\"DELETED\"") || !text.trim_end().ends_with('}') {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
        if line.starts_with('}') && text.contains("\"DELETED\"") {
            break;
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let events: Vec<(String, String, String)> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|e| {
            let e = e.expect("kubectl prints JSON watch events");
            let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                field(&e["type"]),
                field(&e["object"]["metadata"]["name"]),
                field(&e["object"]["data"]["a"]),
            )
        })
        .collect();
    let expected = [
        ("ADDED", "before", "b"),
        ("ADDED", "w1", "b"),
        ("MODIFIED", "w1", "z"),
        ("DELETED", "w1", "z"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(events, expected, "{text}");
}

#[test]
fn describe_shows_events_from_both_event_apis() {
    let cp = ControlPlane::start();
    cp.ok_stdin(CREATE, &configmap("c1"));
    let uid = cp.get_json(&["cm", "c1"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let core_event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "c1.core", "namespace": "default"},
        "involvedObject": {"kind": "ConfigMap", "name": "c1", "namespace": "default", "uid": uid, "apiVersion": "v1"},
        "reason": "Checked", "message": "looked at it", "type": "Normal",
        "source": {"component": "e2e"}, "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
    });
    cp.ok_stdin(CREATE, &core_event.to_string());
    let new_event = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "c1.new", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:01.000000Z",
        "regarding": {"kind": "ConfigMap", "name": "c1", "namespace": "default", "uid": uid, "apiVersion": "v1"},
        "reason": "Reconciled", "note": "recorded by a controller", "type": "Normal",
        "action": "Reconcile", "reportingController": "example.com/ctrl", "reportingInstance": "ctrl-0",
    });
    cp.ok_stdin(CREATE, &new_event.to_string());
    let described = cp.ok(&["describe", "cm", "c1"]);
    assert!(
        described.contains("Checked") && described.contains("looked at it"),
        "{described}"
    );
    assert!(
        described.contains("Reconciled") && described.contains("recorded by a controller"),
        "{described}"
    );
    // kube-rs's Recorder counts repeats by merge-patching `series` through events.k8s.io.
    let (code, patched) = cp.merge_patch(
        "/apis/events.k8s.io/v1/namespaces/default/events/c1.new",
        r#"{"series":{"count":2,"lastObservedTime":"2026-01-01T00:00:05.000000Z"}}"#,
    );
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["note"], "recorded by a controller");
    assert_eq!(cp.get_json(&["events.v1.", "c1.new"])["series"]["count"], 2);
    // Stored once, on an etcd lease: events expire after upstream's one-hour TTL.
    let stored = cp.etcd.ctl(&["get", "/registry/events/default/c1.new"]);
    let lease = stored["kvs"][0]["lease"]
        .as_i64()
        .expect("the event is on a lease");
    let ttl = cp.etcd.ctl(&["lease", "timetolive", &format!("{lease:x}")]);
    let granted = ttl["granted-ttl"]
        .as_i64()
        .or(ttl["grantedTTL"].as_i64())
        .unwrap();
    assert!((3600..=3700).contains(&granted), "{ttl}");
    // The same stored event, read through the other API.
    let as_core = cp.get_json(&["events.v1.", "c1.new"]);
    assert_eq!(as_core["message"], "recorded by a controller");
    assert_eq!(as_core["involvedObject"]["name"], "c1");
    let as_new = cp.get_json(&["events.v1.events.k8s.io", "c1.core"]);
    assert_eq!(as_new["note"], "looked at it");
    assert_eq!(as_new["regarding"]["uid"], uid);
}

#[test]
fn api_resources_lists_the_built_in_types() {
    let cp = ControlPlane::start();
    let out = cp.ok(&["api-resources", "-o", "wide"]);
    for needle in [
        "pods",
        "deployments",
        "leases",
        "endpointslices",
        "poddisruptionbudgets",
        "cronjobs",
        "clusterroles",
        "apiservices",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(needle)),
            "{needle} missing:\n{out}"
        );
    }
    let scale = cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx:1.25"}]}}}}).to_string(),
    );
    assert!(scale.contains("deployment.apps/web created"));
    cp.ok(&["scale", "deployment", "web", "--replicas=3"]);
    let d = cp.get_json(&["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["metadata"]["generation"], 2);
    let all = cp.ok(&["get", "all", "-o", "name"]);
    assert!(
        all.contains("deployment.apps/web") && all.contains("service/kubernetes"),
        "{all}"
    );
}

#[test]
fn bad_input_gets_clean_status_errors() {
    let cp = ControlPlane::start();
    // Invalid name: 422 with the field named.
    let err = cp.fails(CREATE, Some(&configmap("Bad_Name")));
    assert!(
        err.contains("is invalid") && err.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );
    // Malformed JSON: 400.
    let (code, status) = cp.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        Some(b"{not json"),
    );
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "BadRequest");
    // Wrong types: 400 naming the type.
    let (code, status) = cp.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}"#),
    );
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("cannot be handled as a ConfigMap"),
        "{status}"
    );
    // A pod without containers: 422 with a cause on spec.containers.
    let (code, status) = cp.curl(
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        Some(
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}"#,
        ),
    );
    assert_eq!(code, 422);
    assert_eq!(status["details"]["causes"][0]["field"], "spec.containers");
    // Oversize body: 413.
    let huge = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"huge"},"data":{"a":"x".repeat(4 << 20)}}).to_string();
    let err = cp.fails(CREATE, Some(&huge));
    assert!(err.contains("Request entity too large"), "{err}");
    // Duplicate: 409 AlreadyExists.
    cp.ok_stdin(CREATE, &configmap("dup"));
    let err = cp.fails(CREATE, Some(&configmap("dup")));
    assert!(
        err.contains("AlreadyExists") && err.contains("configmaps \"dup\" already exists"),
        "{err}"
    );
    // Missing objects: 404 NotFound.
    let err = cp.fails(&["get", "cm", "nope"], None);
    assert!(
        err.contains("NotFound") && err.contains("configmaps \"nope\" not found"),
        "{err}"
    );
    // Unsupported field selectors: 400.
    let err = cp.fails(&["get", "cm", "--field-selector", "data.a=b"], None);
    assert!(err.contains("field label not supported: data.a"), "{err}");
    // Nothing half-written: only the one valid object exists.
    assert_eq!(cp.ok(&["get", "cm", "-o", "name"]).trim(), "configmap/dup");
}

#[test]
fn terminating_namespaces_accept_no_new_content() {
    let cp = ControlPlane::start();
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"}}).to_string(),
    );
    cp.ok(&["delete", "ns", "doomed", "--wait=false"]);
    let ns = cp.get_json(&["ns", "doomed"]);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let err = cp.fails(
        &["create", "--validate=false", "-n", "doomed", "-f", "-"],
        Some(&configmap("late")),
    );
    assert!(
        err.contains("Forbidden") && err.contains("because it is being terminated"),
        "{err}"
    );
    // Clearing the namespace's finalizers (the namespace controller's job) completes the delete.
    let (code, _) = cp.curl(
        "PUT",
        "/api/v1/namespaces/doomed/finalize",
        "application/json",
        Some(br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"},"spec":{"finalizers":[]}}"#),
    );
    assert_eq!(code, 200);
    eventually("namespace gone", Duration::from_secs(10), || {
        !cp.kubectl(&["get", "ns", "doomed"]).status.success()
    });
    // A namespace that never existed: 404.
    let err = cp.fails(
        &["create", "--validate=false", "-n", "ghost", "-f", "-"],
        Some(&configmap("x")),
    );
    assert!(err.contains("namespaces \"ghost\" not found"), "{err}");
}

#[test]
fn typed_create_commands_send_protobuf_and_work() {
    let cp = ControlPlane::start();
    cp.ok(&["create", "namespace", "team-a"]);
    cp.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team-a",
        "--from-literal=mode=fast",
    ]);
    cp.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team-a",
        "--from-literal=password=hunter2",
    ]);
    cp.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "team-a",
        "--image=nginx:1.25",
        "--replicas=2",
    ]);
    cp.ok(&["create", "serviceaccount", "robot", "-n", "team-a"]);
    cp.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "team-a",
        "--tcp=80:8080",
    ]);
    assert_eq!(
        cp.get_json(&["cm", "settings", "-n", "team-a"])["data"]["mode"],
        "fast"
    );
    assert_eq!(
        cp.get_json(&["secret", "creds", "-n", "team-a"])["data"]["password"],
        "aHVudGVyMg=="
    );
    let d = cp.get_json(&["deploy", "web", "-n", "team-a"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let svc = cp.get_json(&["svc", "web", "-n", "team-a"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .starts_with("10.0.0."));
    // Bad input through the typed path is still a clean Status.
    let err = cp.fails(&["create", "configmap", "Bad_Name", "-n", "team-a"], None);
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );
}
