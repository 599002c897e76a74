//! hakube-scheduler against the real API server and etcd, with simulated nodes: the tests
//! create Node objects with capacity, allocatable and a Ready condition (no kubelet), and
//! act as the kubelet where one is needed (confirming the deletion of preempted pods).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hakube_e2e::components::Component;
use hakube_e2e::{eventually, ControlPlane};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// A hakube-scheduler process, with its `--config` file when given; killed when dropped.
struct SchedulerProcess {
    component: Component,
    _config: Option<tempfile::TempDir>,
}

impl SchedulerProcess {
    fn start(cp: &ControlPlane, config: Option<&str>) -> SchedulerProcess {
        let Some(text) = config else {
            return SchedulerProcess {
                component: Component::start(cp, "hakube-scheduler", &[]),
                _config: None,
            };
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).expect("writing the scheduler config");
        let path = path.to_string_lossy().into_owned();
        SchedulerProcess {
            component: Component::start(cp, "hakube-scheduler", &["--config", &path]),
            _config: Some(dir),
        }
    }

    fn log(&self) -> String {
        self.component.log()
    }

    fn is_leading(&self) -> bool {
        self.component.is_leading()
    }

    fn get(&self, path: &str) -> String {
        self.component.get(path)
    }
}

fn apply(cp: &ControlPlane, object: &Value) {
    cp.ok_stdin(&["apply", "-f", "-"], &object.to_string());
}

/// A Ready node with the given allocatable resources, labels and taints.
fn node(cp: &ControlPlane, name: &str, cpu: &str, memory: &str, labels: Value, taints: Value) {
    node_with(
        cp,
        name,
        json!({"cpu": cpu, "memory": memory, "pods": "110"}),
        labels,
        taints,
    );
}

fn node_with(cp: &ControlPlane, name: &str, resources: Value, labels: Value, taints: Value) {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    apply(
        cp,
        &json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {
                "capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "simulated"}],
            },
        }),
    );
}

fn pod_manifest(name: &str, cpu: &str, extra_spec: Value) -> Value {
    let mut spec = json!({
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {}}, "spec": spec})
}

fn pod(cp: &ControlPlane, name: &str, cpu: &str, extra_spec: Value) {
    cp.ok_stdin(
        &["create", "-f", "-"],
        &pod_manifest(name, cpu, extra_spec).to_string(),
    );
}

fn labelled_pod(cp: &ControlPlane, name: &str, labels: Value, extra_spec: Value) {
    let mut manifest = pod_manifest(name, "100m", extra_spec);
    manifest["metadata"]["labels"] = labels;
    cp.ok_stdin(&["create", "-f", "-"], &manifest.to_string());
}

fn node_of(cp: &ControlPlane, pod: &str) -> Option<String> {
    cp.get_json(&["pod", pod])["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

fn wait_bound(cp: &ControlPlane, pod: &str) -> String {
    let mut node = None;
    eventually(&format!("pod {pod} bound"), WAIT, || {
        node = node_of(cp, pod);
        node.is_some()
    });
    node.unwrap_or_default()
}

/// Pods per node, over pods whose names start with `prefix`.
fn placement(cp: &ControlPlane, prefix: &str) -> BTreeMap<String, usize> {
    let pods = cp.get_json(&["pods"]);
    let mut out = BTreeMap::new();
    for p in pods["items"].as_array().into_iter().flatten() {
        let name = p["metadata"]["name"].as_str().unwrap_or("");
        if let (true, Some(node)) = (name.starts_with(prefix), p["spec"]["nodeName"].as_str()) {
            *out.entry(node.to_string()).or_insert(0) += 1;
        }
    }
    out
}

fn scheduled_condition(cp: &ControlPlane, pod: &str) -> Value {
    let object = cp.get_json(&["pod", pod]);
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .unwrap_or(Value::Null)
}

/// The message of the pod's PodScheduled=False condition, once the scheduler has written it.
fn unschedulable_message(cp: &ControlPlane, pod: &str) -> String {
    let mut message = String::new();
    eventually(&format!("pod {pod} marked unschedulable"), WAIT, || {
        let c = scheduled_condition(cp, pod);
        message = c["message"].as_str().unwrap_or("").to_string();
        c["status"] == "False" && c["reason"] == "Unschedulable"
    });
    message
}

fn events_of(cp: &ControlPlane, pod: &str) -> Vec<Value> {
    let selector = format!("involvedObject.name={pod}");
    cp.get_json(&["events", "--field-selector", &selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn stays_pending(cp: &ControlPlane, pod: &str) {
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(node_of(cp, pod), None, "{pod} should not have been bound");
}

#[test]
fn scores_spread_balance_and_follow_node_labels() {
    let cp = ControlPlane::start();
    let config = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: balanced
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesBalancedAllocation, weight: 1}]
- schedulerName: prefer-ssd
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeLabel, weight: 3}]
  pluginConfig:
  - name: NodeLabel
    args: {presentLabelsPreference: [disk]}
- schedulerName: avoid-ssd
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeLabel, weight: 3}]
  pluginConfig:
  - name: NodeLabel
    args: {absentLabelsPreference: [disk]}
"#;
    let scheduler = SchedulerProcess::start(&cp, Some(config));
    for n in ["spread-1", "spread-2", "spread-3"] {
        node(&cp, n, "4", "8Gi", json!({"scenario": "spread"}), json!([]));
    }
    node(
        &cp,
        "bal-cpu-heavy",
        "4",
        "8Gi",
        json!({"scenario": "balanced"}),
        json!([]),
    );
    node(
        &cp,
        "bal-even",
        "4",
        "8Gi",
        json!({"scenario": "balanced"}),
        json!([]),
    );
    node(
        &cp,
        "lbl-ssd",
        "4",
        "8Gi",
        json!({"scenario": "label", "disk": "ssd"}),
        json!([]),
    );
    node(
        &cp,
        "lbl-plain",
        "4",
        "8Gi",
        json!({"scenario": "label"}),
        json!([]),
    );

    // Least requested: pods go one by one to the emptiest node.
    for i in 0..6 {
        pod(
            &cp,
            &format!("spread-{i}"),
            "500m",
            json!({"nodeSelector": {"scenario": "spread"}}),
        );
        wait_bound(&cp, &format!("spread-{i}"));
    }
    assert_eq!(
        placement(&cp, "spread-")
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{}",
        scheduler.log()
    );

    // Balanced allocation: "bal-cpu-heavy" already runs a cpu-only pod, "bal-even" a pod that
    // uses cpu and memory alike; the new pod keeps bal-even's use balanced.
    let heavy = json!({"nodeName": "bal-cpu-heavy", "containers": [{"name": "c", "image": "pause",
        "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}]});
    pod(&cp, "bal-existing-1", "2", heavy);
    let even = json!({"nodeName": "bal-even", "containers": [{"name": "c", "image": "pause",
        "resources": {"requests": {"cpu": "1", "memory": "3Gi"}}}]});
    pod(&cp, "bal-existing-2", "1", even);
    let balanced = json!({"schedulerName": "balanced", "nodeSelector": {"scenario": "balanced"},
        "containers": [{"name": "c", "image": "pause",
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]});
    pod(&cp, "bal-new", "1", balanced);
    assert_eq!(wait_bound(&cp, "bal-new"), "bal-even");

    // Node-label priority, both ways.
    for i in 0..3 {
        pod(
            &cp,
            &format!("ssd-{i}"),
            "100m",
            json!({"schedulerName": "prefer-ssd", "nodeSelector": {"scenario": "label"}}),
        );
        pod(
            &cp,
            &format!("nossd-{i}"),
            "100m",
            json!({"schedulerName": "avoid-ssd", "nodeSelector": {"scenario": "label"}}),
        );
    }
    for i in 0..3 {
        assert_eq!(wait_bound(&cp, &format!("ssd-{i}")), "lbl-ssd");
        assert_eq!(wait_bound(&cp, &format!("nossd-{i}")), "lbl-plain");
    }
    // Each decision is an event.
    let events = events_of(&cp, "ssd-0");
    assert!(
        events.iter().any(|e| e["reason"] == "Scheduled"
            && e["message"] == "Successfully assigned default/ssd-0 to lbl-ssd"),
        "{events:?}"
    );
}

#[test]
fn filters_refuse_what_they_should_and_say_why() {
    let cp = ControlPlane::start();
    let scheduler = SchedulerProcess::start(&cp, None);
    node(&cp, "small-1", "1", "4Gi", json!({}), json!([]));
    node(&cp, "small-2", "1", "4Gi", json!({}), json!([]));
    node(
        &cp,
        "tainted",
        "8",
        "16Gi",
        json!({}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    );

    // The issue's example, word for word as upstream writes it.
    pod(&cp, "too-big", "2", json!({}));
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
        2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful \
        for scheduling, 2 No preemption victims found for incoming pod.";
    assert_eq!(
        unschedulable_message(&cp, "too-big"),
        expected,
        "{}",
        scheduler.log()
    );
    eventually("a FailedScheduling event", WAIT, || {
        events_of(&cp, "too-big").iter().any(|e| {
            e["reason"] == "FailedScheduling" && e["type"] == "Warning" && e["message"] == expected
        })
    });

    // A toleration lets a pod onto the tainted node.
    pod(
        &cp,
        "tolerating",
        "2",
        json!({"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
    );
    assert_eq!(wait_bound(&cp, "tolerating"), "tainted");

    // Removing the taint is a cluster event: the waiting pod is retried and fits.
    node(&cp, "tainted", "8", "16Gi", json!({}), json!([]));
    assert_eq!(wait_bound(&cp, "too-big"), "tainted");

    // Cordoned node.
    node(
        &cp,
        "cordoned",
        "8",
        "16Gi",
        json!({"scenario": "cordon"}),
        json!([]),
    );
    cp.ok(&["cordon", "cordoned"]);
    pod(
        &cp,
        "on-cordoned",
        "100m",
        json!({"nodeSelector": {"scenario": "cordon"}}),
    );
    let message = unschedulable_message(&cp, "on-cordoned");
    assert!(
        message.contains("1 node(s) were unschedulable"),
        "{message}"
    );
    assert!(
        message.contains("node(s) didn't match Pod's node affinity/selector"),
        "{message}"
    );
    cp.ok(&["uncordon", "cordoned"]);
    assert_eq!(wait_bound(&cp, "on-cordoned"), "cordoned");

    // Required node affinity.
    node(&cp, "zone-x", "8", "16Gi", json!({"zone": "x"}), json!([]));
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]}]}}}});
    pod(&cp, "wants-zone-x", "100m", affinity);
    assert_eq!(wait_bound(&cp, "wants-zone-x"), "zone-x");
    pod(
        &cp,
        "wants-nowhere",
        "100m",
        json!({"nodeSelector": {"zone": "nowhere"}}),
    );
    let message = unschedulable_message(&cp, "wants-nowhere");
    assert!(
        message.starts_with(
            "0/5 nodes are available: 5 node(s) didn't match Pod's node affinity/selector."
        ),
        "{message}"
    );

    // Host ports.
    let port = |name: &str| {
        pod(
            &cp,
            name,
            "10m",
            json!({"nodeSelector": {"zone": "x"},
            "containers": [{"name": "c", "image": "pause",
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        )
    };
    port("port-1");
    assert_eq!(wait_bound(&cp, "port-1"), "zone-x");
    port("port-2");
    let message = unschedulable_message(&cp, "port-2");
    assert!(
        message.contains("1 node(s) didn't have free ports for the requested pod ports"),
        "{message}"
    );

    // Extended resources and the pod count.
    node_with(
        &cp,
        "gpu-node",
        json!({"cpu": "8", "memory": "16Gi", "pods": "2", "example.com/gpu": "1"}),
        json!({"scenario": "gpu"}),
        json!([]),
    );
    let gpu = |name: &str| {
        pod(
            &cp,
            name,
            "10m",
            json!({"nodeSelector": {"scenario": "gpu"},
            "containers": [{"name": "c", "image": "pause",
            "resources": {"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "1"}}}]}),
        )
    };
    gpu("gpu-1");
    assert_eq!(wait_bound(&cp, "gpu-1"), "gpu-node");
    gpu("gpu-2");
    let message = unschedulable_message(&cp, "gpu-2");
    assert!(
        message.contains("1 Insufficient example.com/gpu"),
        "{message}"
    );
    pod(
        &cp,
        "gpu-plain-1",
        "10m",
        json!({"nodeSelector": {"scenario": "gpu"}}),
    );
    assert_eq!(wait_bound(&cp, "gpu-plain-1"), "gpu-node");
    pod(
        &cp,
        "gpu-plain-2",
        "10m",
        json!({"nodeSelector": {"scenario": "gpu"}}),
    );
    let message = unschedulable_message(&cp, "gpu-plain-2");
    assert!(message.contains("1 Too many pods"), "{message}");
    stays_pending(&cp, "gpu-2");
}

#[test]
fn topology_spread_and_anti_affinity_across_three_zones() {
    let cp = ControlPlane::start();
    let scheduler = SchedulerProcess::start(&cp, None);
    for zone in ["a", "b", "c"] {
        for i in 1..=2 {
            node(
                &cp,
                &format!("{zone}-{i}"),
                "8",
                "16Gi",
                json!({"topology.kubernetes.io/zone": zone}),
                json!([]),
            );
        }
    }
    // Skewed capacity would pull least-requested towards zone a; the constraint wins.
    node(
        &cp,
        "a-big",
        "64",
        "256Gi",
        json!({"topology.kubernetes.io/zone": "a"}),
        json!([]),
    );
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    for i in 0..6 {
        labelled_pod(
            &cp,
            &format!("spread-{i}"),
            json!({"app": "spread"}),
            spread.clone(),
        );
    }
    let mut per_zone = BTreeMap::new();
    for i in 0..6 {
        let node = wait_bound(&cp, &format!("spread-{i}"));
        let zone = node.split('-').next().unwrap_or("").to_string();
        *per_zone.entry(zone).or_insert(0) += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{}",
        scheduler.log()
    );

    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}});
    let mut zones = Vec::new();
    for i in 0..3 {
        labelled_pod(
            &cp,
            &format!("solo-{i}"),
            json!({"app": "solo"}),
            anti.clone(),
        );
        let node = wait_bound(&cp, &format!("solo-{i}"));
        zones.push(node.split('-').next().unwrap_or("").to_string());
    }
    zones.sort();
    assert_eq!(zones, vec!["a", "b", "c"]);
    labelled_pod(&cp, "solo-3", json!({"app": "solo"}), anti);
    let message = unschedulable_message(&cp, "solo-3");
    assert!(
        message.starts_with(
            "0/7 nodes are available: 7 node(s) didn't match pod anti-affinity rules."
        ),
        "{message}"
    );
    // Deleting one of them frees its zone.
    cp.ok(&["delete", "pod", "solo-0", "--grace-period=0", "--force"]);
    wait_bound(&cp, "solo-3");
}

#[test]
fn a_burst_of_100_pods_on_10_nodes_is_spread_by_the_assume_cache() {
    let cp = ControlPlane::start();
    for i in 0..10 {
        node(&cp, &format!("node-{i}"), "4", "8Gi", json!({}), json!([]));
    }
    let items: Vec<Value> = (0..100)
        .map(|i| pod_manifest(&format!("burst-{i:03}"), "100m", json!({})))
        .collect();
    // All pods exist before the scheduler starts, so it sees them as one burst. (kubectl
    // validates a List through an OpenAPI form the server lacks, hence --validate=false.)
    cp.ok_stdin(
        &["create", "--validate=false", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    );
    let scheduler = SchedulerProcess::start(&cp, None);
    let started = Instant::now();
    eventually("100 pods bound", WAIT, || {
        placement(&cp, "burst-").values().sum::<usize>() == 100
    });
    let spread = placement(&cp, "burst-");
    assert_eq!(spread.len(), 10, "{spread:?}");
    assert!(
        spread.values().all(|n| *n == 10),
        "{spread:?}\n{}",
        scheduler.log()
    );
    eprintln!("100 pods bound in {:?}", started.elapsed());
}

#[test]
fn preemption_evicts_lower_priority_pods_and_nominates_the_node() {
    let cp = ControlPlane::start();
    // Priority admission: classes resolve to spec.priority; unknown classes are refused.
    apply(
        &cp,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "low"}, "value": 100}),
    );
    apply(
        &cp,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "high"}, "value": 1000, "description": "important"}),
    );
    let err = cp.fails(
        &["create", "-f", "-"],
        Some(&pod_manifest("bogus", "1", json!({"priorityClassName": "nope"})).to_string()),
    );
    assert!(
        err.contains("pods \"bogus\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
    assert_eq!(
        cp.get_json(&["priorityclass", "system-cluster-critical"])["value"],
        2_000_000_000
    );
    pod(
        &cp,
        "critical",
        "1m",
        json!({"priorityClassName": "system-node-critical", "nodeName": "elsewhere"}),
    );
    assert_eq!(
        cp.get_json(&["pod", "critical"])["spec"]["priority"],
        2_000_001_000
    );

    node(&cp, "only", "2", "8Gi", json!({}), json!([]));
    let scheduler = SchedulerProcess::start(&cp, None);
    for name in ["low-1", "low-2"] {
        pod(&cp, name, "1", json!({"priorityClassName": "low"}));
        assert_eq!(wait_bound(&cp, name), "only");
    }
    assert_eq!(cp.get_json(&["pod", "low-1"])["spec"]["priority"], 100);
    pod(&cp, "important", "2", json!({"priorityClassName": "high"}));
    eventually("important nominated to the node", WAIT, || {
        cp.get_json(&["pod", "important"])["status"]["nominatedNodeName"] == "only"
    });
    // The victims are being deleted; as the kubelet would, confirm their termination.
    for victim in ["low-1", "low-2"] {
        eventually(&format!("{victim} terminating"), WAIT, || {
            let out = cp.kubectl(&["get", "pod", victim, "-o", "json"]);
            !out.status.success()
                || serde_json::from_slice::<Value>(&out.stdout)
                    .map(|p| !p["metadata"]["deletionTimestamp"].is_null())
                    .unwrap_or(false)
        });
        assert!(
            events_of(&cp, victim)
                .iter()
                .any(|e| e["reason"] == "Preempted"),
            "{victim} has no Preempted event"
        );
        let _ = cp.kubectl(&["delete", "pod", victim, "--grace-period=0", "--force"]);
    }
    assert_eq!(wait_bound(&cp, "important"), "only", "{}", scheduler.log());

    // A pod with preemptionPolicy Never waits instead.
    apply(
        &cp,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "polite"}, "value": 5000, "preemptionPolicy": "Never"}),
    );
    pod(&cp, "polite", "1", json!({"priorityClassName": "polite"}));
    let message = unschedulable_message(&cp, "polite");
    assert!(
        message.ends_with("preemption: not eligible due to preemptionPolicy=Never."),
        "{message}"
    );
    assert_eq!(
        cp.get_json(&["pod", "important"])["metadata"]["deletionTimestamp"],
        Value::Null
    );
}

#[test]
fn killing_the_leading_replica_hands_scheduling_to_the_other() {
    let cp = ControlPlane::start();
    node(&cp, "n1", "8", "16Gi", json!({}), json!([]));
    let mut replicas = vec![
        SchedulerProcess::start(&cp, None),
        SchedulerProcess::start(&cp, None),
    ];
    eventually("one replica leads", WAIT, || {
        replicas.iter().any(SchedulerProcess::is_leading)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        replicas.iter().filter(|r| r.is_leading()).count(),
        1,
        "exactly one leader"
    );
    let lease = cp.get_json(&["lease", "-n", "kube-system", "kube-scheduler"]);
    let first_holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!first_holder.is_empty());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 4);

    pod(&cp, "before", "100m", json!({}));
    assert_eq!(wait_bound(&cp, "before"), "n1");
    let leader = replicas
        .iter()
        .position(SchedulerProcess::is_leading)
        .unwrap_or(0);
    // Health and metrics over HTTPS with a self-signed certificate, with upstream's names.
    assert_eq!(replicas[leader].get("/healthz"), "ok");
    let mut metrics = String::new();
    eventually("scheduled attempt in metrics", WAIT, || {
        metrics = replicas[leader].get("/metrics");
        metrics.contains("scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1")
    });
    assert!(
        metrics.contains("scheduler_pending_pods{queue=\"active\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_scheduling_attempt_duration_seconds_bucket"),
        "{metrics}"
    );

    let killed = replicas.remove(leader);
    drop(killed);
    let killed_at = Instant::now();
    pod(&cp, "after", "100m", json!({}));
    assert_eq!(wait_bound(&cp, "after"), "n1", "{}", replicas[0].log());
    assert!(replicas[0].is_leading());
    let lease = cp.get_json(&["lease", "-n", "kube-system", "kube-scheduler"]);
    assert_ne!(
        lease["spec"]["holderIdentity"].as_str().unwrap_or(""),
        first_holder
    );
    // One takeover at least (more only if a loaded machine delayed a renewal past its deadline).
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 1,
        "{lease}"
    );
    eprintln!(
        "the other replica bound a pod {:?} after the leader died",
        killed_at.elapsed()
    );
}
