//! hakube-controller-manager's node and cleanup controllers against a real API server with
//! simulated nodes: node lifecycle and taint-based eviction, node IPAM, pod GC, namespace
//! deletion, the garbage collector's three cascade modes, and leader failover.

use std::time::Duration;

use hakube_e2e::components::Component;
use hakube_e2e::simulated::SimulatedNodes;
use hakube_e2e::{eventually, ControlPlane};
use serde_json::Value;

const NODE_TIMINGS: [&str; 2] = ["--node-monitor-grace-period=4s", "--node-monitor-period=1s"];

fn pod_on(name: &str, node: &str, tolerations: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},
            "spec":{{"nodeName":"{node}","containers":[{{"name":"c","image":"busybox"}}],
                     "tolerations":[{tolerations}]}}}}"#
    )
}

fn unreachable_for(seconds: Option<u32>) -> String {
    let limit = seconds.map_or(String::new(), |s| format!(r#","tolerationSeconds":{s}"#));
    format!(
        r#"{{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute"{limit}}}"#
    )
}

fn taints(cp: &ControlPlane, node: &str) -> Vec<(String, String)> {
    cp.get_json(&["node", node])["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or("").to_string(),
                t["effect"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn ready_condition(cp: &ControlPlane, node: &str) -> Value {
    cp.get_json(&["node", node])["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c["type"] == "Ready")
        .unwrap_or(Value::Null)
}

/// [`eventually`], printing the controller manager's log when it times out.
fn wait(kcm: &Component, what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(what, timeout, check)
    }));
    if let Err(panic) = outcome {
        eprintln!("controller manager log:\n{}", kcm.log());
        std::panic::resume_unwind(panic);
    }
}

/// Gone, or marked for deletion (a dead node's kubelet never confirms).
fn evicted(cp: &ControlPlane, pod: &str) -> bool {
    let out = cp.kubectl(&["get", "pod", pod, "-o", "json", "--ignore-not-found"]);
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return true;
    }
    serde_json::from_str::<Value>(&text)
        .map(|p| !p["metadata"]["deletionTimestamp"].is_null())
        .unwrap_or(false)
}

#[test]
fn silent_node_is_marked_unknown_tainted_and_evicted_then_recovers() {
    let cp = ControlPlane::start();
    let nodes = SimulatedNodes::start(&cp, &["node-1", "node-2"]);
    let mut args = vec!["--controllers", "nodelifecycle,taint-eviction-controller"];
    args.extend(NODE_TIMINGS);
    let kcm = Component::start(&cp, "hakube-controller-manager", &args);
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("now", "node-1", &unreachable_for(Some(0))),
    );
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("later", "node-1", &unreachable_for(Some(6))),
    );
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("forever", "node-1", &unreachable_for(None)),
    );
    eventually("pods running", Duration::from_secs(10), || {
        cp.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"])
            == "Running Running Running"
    });

    nodes.silence("node-1");
    eventually("node-1 Ready Unknown", Duration::from_secs(12), || {
        ready_condition(&cp, "node-1")["status"] == "Unknown"
    });
    let ready = ready_condition(&cp, "node-1");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(ready_condition(&cp, "node-2")["status"], "True");
    wait(&kcm, "unreachable taints", Duration::from_secs(5), || {
        let t = taints(&cp, "node-1");
        t.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
            && t.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))
    });
    let tainted_at = std::time::Instant::now();
    eventually(
        "the pod tolerating 0 s evicted",
        Duration::from_secs(3),
        || evicted(&cp, "now"),
    );
    let now = cp.get_json(&["pod", "now"]);
    assert!(
        now["status"]["conditions"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["type"] == "DisruptionTarget" && c["reason"] == "DeletionByTaintManager")),
        "{now}"
    );
    assert!(!evicted(&cp, "later"), "tolerates for 6 s");
    eventually(
        "the pod tolerating 6 s evicted",
        Duration::from_secs(10),
        || evicted(&cp, "later"),
    );
    assert!(
        tainted_at.elapsed() >= Duration::from_secs(4),
        "evicted after {:?}",
        tainted_at.elapsed()
    );
    assert!(!evicted(&cp, "forever"));
    // The pods on the dead node are no longer Ready.
    let forever = cp.get_json(&["pod", "forever"]);
    assert!(forever["status"]["conditions"].as_array().is_some_and(|c| c
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "False")));
    let metrics = kcm.get("/metrics");
    assert!(
        metrics.contains("node_collector_evictions_total{zone=\"zone-a\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("node_collector_unhealthy_nodes_in_zone{zone=\"zone-a\"} 1"));
    assert!(metrics.contains("node_collector_zone_size{zone=\"zone-a\"} 2"));

    // An untolerated NoExecute taint on a live node evicts its pods at once.
    cp.ok_stdin(&["apply", "-f", "-"], &pod_on("bystander", "node-2", ""));
    eventually("bystander running", Duration::from_secs(10), || {
        cp.ok(&["get", "pod", "bystander", "-o", "jsonpath={.status.phase}"]) == "Running"
    });
    cp.ok(&["taint", "node", "node-2", "example.com/drain=yes:NoExecute"]);
    eventually(
        "the untolerating pod deleted",
        Duration::from_secs(5),
        || {
            cp.ok(&["get", "pods", "--ignore-not-found", "-o", "name"])
                .lines()
                .all(|l| l != "pod/bystander")
        },
    );

    nodes.revive("node-1");
    eventually(
        "node-1 Ready again and untainted",
        Duration::from_secs(10),
        || ready_condition(&cp, "node-1")["status"] == "True" && taints(&cp, "node-1").is_empty(),
    );
}

fn pod_cidrs(cp: &ControlPlane, node: &str) -> Vec<String> {
    cp.get_json(&["node", node])["spec"]["podCIDRs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

fn event_reasons(cp: &ControlPlane) -> Vec<String> {
    cp.get_json(&["events", "-A"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn node_ipam_hands_out_distinct_blocks_and_reuses_released_ones() {
    let cp = ControlPlane::start();
    let nodes = SimulatedNodes::start(&cp, &["node-1", "node-2"]);
    // Four /25 blocks, the first taken by the Service range: room for three nodes.
    let kcm = Component::start(
        &cp,
        "hakube-controller-manager",
        &[
            "--controllers=nodeipam",
            "--allocate-node-cidrs",
            "--cluster-cidr=10.244.0.0/23",
            "--node-cidr-mask-size=25",
            "--service-cluster-ip-range=10.244.0.0/25",
        ],
    );
    wait(
        &kcm,
        "two nodes with podCIDRs",
        Duration::from_secs(10),
        || !pod_cidrs(&cp, "node-1").is_empty() && !pod_cidrs(&cp, "node-2").is_empty(),
    );
    nodes.add(hakube_e2e::simulated::NodeTemplate::new("node-3", "zone-a"));
    eventually("node-3 gets a block", Duration::from_secs(10), || {
        !pod_cidrs(&cp, "node-3").is_empty()
    });
    let mut all: Vec<String> = ["node-1", "node-2", "node-3"]
        .iter()
        .flat_map(|n| pod_cidrs(&cp, n))
        .collect();
    all.sort();
    assert_eq!(
        all,
        vec!["10.244.0.128/25", "10.244.1.0/25", "10.244.1.128/25"]
    );
    assert_eq!(
        cp.get_json(&["node", "node-1"])["spec"]["podCIDR"],
        pod_cidrs(&cp, "node-1")[0]
    );

    nodes.add(hakube_e2e::simulated::NodeTemplate::new("node-4", "zone-a"));
    eventually("CIDRNotAvailable", Duration::from_secs(10), || {
        event_reasons(&cp).iter().any(|r| r == "CIDRNotAvailable")
    });
    assert!(pod_cidrs(&cp, "node-4").is_empty());
    let freed = pod_cidrs(&cp, "node-1");
    cp.ok(&["delete", "node", "node-1"]);
    eventually(
        "node-4 gets the released block",
        Duration::from_secs(10),
        || pod_cidrs(&cp, "node-4") == freed,
    );
}

#[test]
fn pod_gc_collects_orphans_and_old_terminated_pods() {
    let cp = ControlPlane::start();
    let _nodes = SimulatedNodes::start(&cp, &["node-1", "node-2"]);
    let kcm = Component::start(
        &cp,
        "hakube-controller-manager",
        &[
            "--controllers=podgc",
            "--terminated-pod-gc-threshold=2",
            "--pod-gc-check-period=1s",
            "--pod-gc-quarantine-time=2s",
        ],
    );
    cp.ok_stdin(&["apply", "-f", "-"], &pod_on("orphan", "node-2", ""));
    eventually("orphan running", Duration::from_secs(10), || {
        cp.ok(&["get", "pod", "orphan", "-o", "jsonpath={.status.phase}"]) == "Running"
    });
    cp.ok(&["delete", "node", "node-2"]);
    wait(
        &kcm,
        "the pod of the deleted node collected",
        Duration::from_secs(10),
        || {
            cp.ok(&["get", "pods", "--ignore-not-found", "-o", "name"])
                .lines()
                .all(|l| l != "pod/orphan")
        },
    );

    for i in 1..=4 {
        let pod = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"done-{i}","annotations":{{"e2e.hakube.io/exit-code":"0"}}}},
                "spec":{{"nodeName":"node-1","containers":[{{"name":"c","image":"busybox"}}]}}}}"#
        );
        cp.ok_stdin(&["apply", "-f", "-"], &pod);
        std::thread::sleep(Duration::from_millis(1100));
    }
    wait(
        &kcm,
        "the two oldest terminated pods collected",
        Duration::from_secs(15),
        || {
            cp.ok(&["get", "pods", "-o", "name"])
                .split_whitespace()
                .collect::<Vec<_>>()
                == vec!["pod/done-3", "pod/done-4"]
        },
    );
}

const CRD: &str = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
  "metadata":{"name":"widgets.example.com"},
  "spec":{"group":"example.com","scope":"Namespaced",
    "names":{"plural":"widgets","singular":"widget","kind":"Widget"},
    "versions":[{"name":"v1","served":true,"storage":true,
      "schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;

fn namespace_condition(cp: &ControlPlane, ns: &str, type_: &str) -> Value {
    cp.get_json(&["namespace", ns])["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c["type"] == type_)
        .unwrap_or(Value::Null)
}

#[test]
fn namespace_deletion_removes_its_content_then_the_namespace() {
    let cp = ControlPlane::start();
    let kcm = Component::start(
        &cp,
        "hakube-controller-manager",
        &["--controllers=namespace"],
    );
    cp.ok_stdin(&["apply", "-f", "-"], CRD);
    cp.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    cp.ok(&["create", "namespace", "doomed"]);
    cp.ok(&[
        "-n",
        "doomed",
        "create",
        "configmap",
        "plain",
        "--from-literal=a=b",
    ]);
    cp.ok(&[
        "-n",
        "doomed",
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=a=b",
    ]);
    cp.ok_stdin(
        &["-n", "doomed", "apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    cp.ok_stdin(
        &["-n", "doomed", "apply", "-f", "-"],
        r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":1}}"#,
    );
    cp.ok_stdin(
        &["-n", "doomed", "apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"held","finalizers":["example.com/hold"]}}"#,
    );
    cp.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    wait(
        &kcm,
        "content deleted but the held ConfigMap",
        Duration::from_secs(15),
        || {
            namespace_condition(&cp, "doomed", "NamespaceContentRemaining")["message"]
                == "Some resources are remaining: configmaps. has 1 resource instances"
        },
    );
    assert_eq!(
        namespace_condition(&cp, "doomed", "NamespaceFinalizersRemaining")["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(
        namespace_condition(&cp, "doomed", "NamespaceDeletionDiscoveryFailure")["reason"],
        "ResourcesDiscovered"
    );
    assert_eq!(
        cp.ok(&["-n", "doomed", "get", "widgets,pods,secrets", "-o", "name"])
            .trim(),
        ""
    );
    assert_eq!(
        cp.ok(&["-n", "doomed", "get", "configmaps", "-o", "name"])
            .trim(),
        "configmap/held"
    );
    assert_eq!(
        cp.get_json(&["namespace", "doomed"])["spec"]["finalizers"],
        serde_json::json!(["kubernetes"])
    );

    cp.ok(&[
        "-n",
        "doomed",
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait(&kcm, "the namespace gone", Duration::from_secs(15), || {
        cp.ok(&[
            "get",
            "namespace",
            "doomed",
            "--ignore-not-found",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
    });
}
