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
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("patient", "node-1", &unreachable_for(Some(60))),
    );
    eventually("pods running", Duration::from_secs(10), || {
        cp.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"])
            == "Running Running Running Running"
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
    assert!(metrics.contains("node_collector_zone_health{zone=\"zone-a\"} 50"));

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
    // The eviction waiting for the patient pod is called off.
    wait(&kcm, "eviction cancelled", Duration::from_secs(10), || {
        event_messages(&cp)
            .iter()
            .any(|m| m == "Cancelling deletion of Pod default/patient")
    });
    assert!(!evicted(&cp, "patient"));
    let messages = event_messages(&cp);
    assert!(messages
        .iter()
        .any(|m| m == "Marking for deletion Pod default/now"));
    assert!(messages
        .iter()
        .any(|m| m == "Node node-1 status is now: NodeNotReady"));
}

fn event_messages(cp: &ControlPlane) -> Vec<String> {
    cp.get_json(&["events", "-A"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
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

/// A ReplicaSet (no replicaset controller runs) and `pods` pods owned by it, made by hand.
fn replica_set_with_pods(
    cp: &ControlPlane,
    name: &str,
    pods: usize,
    pod_finalizer: bool,
) -> String {
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{{"name":"{name}"}},
               "spec":{{"replicas":{pods},"selector":{{"matchLabels":{{"app":"{name}"}}}},
                 "template":{{"metadata":{{"labels":{{"app":"{name}"}}}},
                   "spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}}}}}"#
        ),
    );
    let uid = cp.get_json(&["rs", name])["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_string();
    for i in 0..pods {
        let finalizers = if pod_finalizer && i == 0 {
            r#","finalizers":["example.com/hold"]"#
        } else {
            ""
        };
        cp.ok_stdin(
            &["apply", "-f", "-"],
            &format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}-{i}","labels":{{"app":"{name}"}}{finalizers},
                   "ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"{name}","uid":"{uid}",
                                        "controller":true,"blockOwnerDeletion":true}}]}},
                   "spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
            ),
        );
    }
    uid
}

fn pods_of(cp: &ControlPlane, app: &str) -> Vec<Value> {
    cp.get_json(&["pods", "-l", &format!("app={app}")])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn garbage_collector_cascades_background_foreground_and_orphan() {
    let cp = ControlPlane::start();
    let kcm = Component::start(
        &cp,
        "hakube-controller-manager",
        &["--controllers=garbagecollector"],
    );
    wait(&kcm, "graph synced", Duration::from_secs(15), || {
        kcm.log().contains("garbage collector graph synced")
    });

    // Background: the owner goes at once, its dependents after.
    replica_set_with_pods(&cp, "bg", 2, false);
    cp.ok(&["delete", "rs", "bg", "--cascade=background"]);
    wait(
        &kcm,
        "background dependents deleted",
        Duration::from_secs(10),
        || pods_of(&cp, "bg").is_empty(),
    );

    // Foreground: the owner stays (with the finalizer) while a dependent remains.
    replica_set_with_pods(&cp, "fg", 2, true);
    cp.ok(&["delete", "rs", "fg", "--cascade=foreground", "--wait=false"]);
    wait(
        &kcm,
        "foreground: unheld dependent deleted",
        Duration::from_secs(10),
        || {
            let pods = pods_of(&cp, "fg");
            pods.len() == 1 && !pods[0]["metadata"]["deletionTimestamp"].is_null()
        },
    );
    let rs = cp.get_json(&["rs", "fg"]);
    assert!(!rs["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(
        rs["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    cp.ok(&[
        "patch",
        "pod",
        "fg-0",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait(
        &kcm,
        "foreground: owner deleted last",
        Duration::from_secs(10),
        || {
            cp.ok(&["get", "rs", "fg", "--ignore-not-found", "-o", "name"])
                .trim()
                .is_empty()
        },
    );
    assert!(pods_of(&cp, "fg").is_empty());

    // Orphan: the owner goes, the dependents stay and forget it.
    replica_set_with_pods(&cp, "or", 2, false);
    cp.ok(&["delete", "rs", "or", "--cascade=orphan", "--timeout=20s"]);
    assert!(cp
        .ok(&["get", "rs", "or", "--ignore-not-found", "-o", "name"])
        .trim()
        .is_empty());
    let pods = pods_of(&cp, "or");
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|p| p["metadata"]["ownerReferences"]
        .as_array()
        .is_none_or(|o| o.is_empty())));

    // A dependent whose owner never existed is collected.
    cp.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"stray",
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"ghost",
                                "uid":"00000000-0000-0000-0000-000000000001"}]}}"#,
    );
    wait(
        &kcm,
        "stray dependent deleted",
        Duration::from_secs(10),
        || {
            cp.ok(&[
                "get",
                "configmap",
                "stray",
                "--ignore-not-found",
                "-o",
                "name",
            ])
            .trim()
            .is_empty()
        },
    );
    assert_eq!(pods_of(&cp, "or").len(), 2, "orphans are left alone");
}

#[test]
fn a_standby_replica_takes_over_when_the_leader_dies() {
    let cp = ControlPlane::start();
    let nodes = SimulatedNodes::start(&cp, &["node-1", "node-2"]);
    let mut args = vec!["--controllers", "nodelifecycle"];
    args.extend(NODE_TIMINGS);
    let mut first = Component::start(&cp, "hakube-controller-manager", &args);
    eventually("the first replica leads", Duration::from_secs(10), || {
        first.is_leading()
    });
    let second = Component::start(&cp, "hakube-controller-manager", &args);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!second.is_leading(), "only one replica leads");
    assert!(second
        .get("/metrics")
        .contains("leader_election_master_status 0"));

    first.kill();
    wait(
        &second,
        "the second replica takes over",
        Duration::from_secs(15),
        || second.is_leading(),
    );
    nodes.silence("node-1");
    wait(
        &second,
        "the new leader marks the silent node",
        Duration::from_secs(15),
        || ready_condition(&cp, "node-1")["status"] == "Unknown",
    );
}
