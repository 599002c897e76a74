use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

/// The RFC 3339 timestamp `d` before now().
fn ago(d: Duration) -> String {
    (now() - d).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn cells_of(group: &str, resource: &str, obj: &Value) -> Vec<Value> {
    cells(group, resource, obj, now())
}

fn row_cells(group: &str, resource: &str, obj: &Value) -> Value {
    Value::from(cells_of(group, resource, obj))
}

#[test]
fn human_duration_boundaries() {
    let secs = Duration::seconds;
    let hours = Duration::hours;
    let days = Duration::days;
    for (d, want) in [
        (secs(-3), "<invalid>"),
        (secs(-2), "<invalid>"),
        (Duration::milliseconds(-1500), "0s"),
        (secs(-1), "0s"),
        (Duration::zero(), "0s"),
        (Duration::milliseconds(59_900), "59s"),
        (secs(119), "119s"),
        (secs(120), "2m"),
        (secs(150), "2m30s"),
        (secs(599), "9m59s"),
        (secs(600), "10m"),
        (secs(3 * 3600 - 1), "179m"),
        (hours(3), "3h"),
        (secs(3 * 3600 + 5 * 60 + 59), "3h5m"),
        (secs(8 * 3600 - 1), "7h59m"),
        (hours(8), "8h"),
        (secs(48 * 3600 - 1), "47h"),
        (hours(48), "2d"),
        (hours(51), "2d3h"),
        (secs(8 * 86400 - 1), "7d23h"),
        (days(8), "8d"),
        (days(45), "45d"),
        (secs(730 * 86400 - 1), "729d"),
        (days(730), "2y"),
        (days(830), "2y100d"),
        (days(8 * 365 - 1), "7y364d"),
        (days(8 * 365), "8y"),
        (days(3000), "8y"),
    ] {
        assert_eq!(human_duration(d), want, "{d}");
    }
}

#[test]
fn column_names() {
    // Column names joined by "|", wide-only ones marked with "*".
    let cases = [
        ("", "pods", "Name|Ready|Status|Restarts|Age|IP*|Node*|Nominated Node*|Readiness Gates*"),
        ("apps", "deployments", "Name|Ready|Up-to-date|Available|Age|Containers*|Images*|Selector*"),
        ("apps", "replicasets", "Name|Desired|Current|Ready|Age|Containers*|Images*|Selector*"),
        ("apps", "statefulsets", "Name|Ready|Age|Containers*|Images*"),
        (
            "apps",
            "daemonsets",
            "Name|Desired|Current|Ready|Up-to-date|Available|Node Selector|Age|Containers*|Images*|Selector*",
        ),
        ("", "services", "Name|Type|Cluster-IP|External-IP|Port(s)|Age|Selector*"),
        (
            "",
            "nodes",
            "Name|Status|Roles|Age|Version|Internal-IP*|External-IP*|OS-Image*|Kernel-Version*|Container-Runtime*",
        ),
        ("", "namespaces", "Name|Status|Age"),
        ("", "configmaps", "Name|Data|Age"),
        ("", "secrets", "Name|Type|Data|Age"),
        (
            "",
            "events",
            "Last Seen|Type|Reason|Object|Subobject*|Source*|Message|First Seen*|Count*|Name*",
        ),
        (
            "events.k8s.io",
            "events",
            "Last Seen|Type|Reason|Object|Subobject*|Source*|Message|First Seen*|Count*|Name*",
        ),
        ("coordination.k8s.io", "leases", "Name|Holder|Age"),
        ("batch", "jobs", "Name|Status|Completions|Duration|Age|Containers*|Images*|Selector*"),
        (
            "batch",
            "cronjobs",
            "Name|Schedule|Timezone|Suspend|Active|Last Schedule|Age|Containers*|Images*|Selector*",
        ),
        ("", "endpoints", "Name|Endpoints|Age"),
        (
            "",
            "persistentvolumes",
            "Name|Capacity|Access Modes|Reclaim Policy|Status|Claim|StorageClass|VolumeAttributesClass|Reason|Age|VolumeMode*",
        ),
        (
            "",
            "persistentvolumeclaims",
            "Name|Status|Volume|Capacity|Access Modes|StorageClass|VolumeAttributesClass|Age|VolumeMode*",
        ),
        ("rbac.authorization.k8s.io", "roles", "Name|Created At"),
    ];
    for (group, resource, want) in cases {
        let cols = columns(group, resource);
        let got: Vec<String> = cols
            .iter()
            .map(|c| format!("{}{}", c.name, if c.priority == 1 { "*" } else { "" }))
            .collect();
        assert_eq!(got.join("|"), want, "{group}/{resource}");
        // Exactly one column holds the object's name, marked for clients.
        let name_cols: Vec<_> = cols
            .iter()
            .filter(|c| c.format == "name")
            .map(|c| c.name)
            .collect();
        assert_eq!(name_cols, ["Name"], "{group}/{resource}");
        // A printer's cells line up with its columns.
        assert_eq!(
            cells_of(group, resource, &json!({})).len(),
            cols.len(),
            "{group}/{resource}"
        );
    }
}

#[test]
fn default_printer() {
    let cols = columns("rbac.authorization.k8s.io", "roles");
    let kinds: Vec<_> = cols.iter().map(|c| (c.name, c.kind, c.format)).collect();
    assert_eq!(
        kinds,
        [("Name", "string", "name"), ("Created At", "date", "")]
    );
    let role =
        json!({"metadata": {"name": "reader", "creationTimestamp": ago(Duration::hours(1))}});
    assert_eq!(
        row_cells("rbac.authorization.k8s.io", "roles", &role),
        json!(["reader", "2025-06-01T11:00:00Z"])
    );
    assert_eq!(
        row_cells(
            "example.com",
            "widgets",
            &json!({"metadata": {"name": "w"}})
        ),
        json!(["w", "0001-01-01T00:00:00Z"])
    );
}

#[test]
fn running_pod_with_restarts() {
    let pod = json!({
        "metadata": {"name": "web-7d4b9c", "namespace": "default", "creationTimestamp": ago(Duration::hours(51))},
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "app", "ready": true, "started": true, "restartCount": 3,
                    "state": {"running": {"startedAt": ago(Duration::minutes(5))}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": ago(Duration::minutes(5))}},
                },
                {
                    "name": "log", "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": ago(Duration::hours(51))}},
                    "lastState": {},
                },
            ],
        },
    });
    assert_eq!(
        row_cells("", "pods", &pod),
        json!([
            "web-7d4b9c",
            "2/2",
            "Running",
            "3 (5m ago)",
            "2d3h",
            "10.244.1.5",
            "node-a",
            "<none>",
            "<none>"
        ])
    );
    // A running pod's row has no conditions.
    let row = row("", "pods", &pod, IncludeObject::None, now());
    assert_eq!(row.get("conditions"), None);
}

#[test]
fn crash_looping_pod() {
    let pod = json!({
        "metadata": {"name": "api", "creationTimestamp": ago(Duration::minutes(20))},
        "spec": {"nodeName": "node-b", "containers": [{"name": "api", "image": "api:1"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.2.9",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [{
                "name": "api", "ready": false, "started": false, "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(Duration::seconds(90))}},
            }],
        },
    });
    assert_eq!(
        row_cells("", "pods", &pod),
        json!([
            "api",
            "0/1",
            "CrashLoopBackOff",
            "7 (90s ago)",
            "20m",
            "10.244.2.9",
            "node-b",
            "<none>",
            "<none>"
        ])
    );
}

#[test]
fn initializing_pods() {
    let pod = json!({
        "metadata": {"name": "app-0", "creationTimestamp": ago(Duration::minutes(3))},
        "spec": {
            "initContainers": [
                {"name": "setup", "image": "busybox"},
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
                {"name": "migrate", "image": "app"},
            ],
            "containers": [{"name": "app", "image": "app"}],
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "Initialized", "status": "False"}],
            "initContainerStatuses": [
                {"name": "setup", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {
                    "name": "proxy", "ready": true, "started": true, "restartCount": 1, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(Duration::minutes(2))}},
                },
                {"name": "migrate", "ready": false, "restartCount": 0, "state": {"running": {}}},
            ],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
        },
    });
    // The sidecar counts towards the pod's containers and is ready; the third init container runs.
    assert_eq!(
        row_cells("", "pods", &pod),
        json!([
            "app-0",
            "1/2",
            "Init:2/3",
            "1 (2m ago)",
            "3m",
            "<none>",
            "<none>",
            "<none>",
            "<none>"
        ])
    );

    for (state, want) in [
        (
            json!({"waiting": {"reason": "ImagePullBackOff"}}),
            "Init:ImagePullBackOff",
        ),
        (
            json!({"waiting": {"reason": "PodInitializing"}}),
            "Init:0/1",
        ),
        (json!({"terminated": {"exitCode": 1}}), "Init:ExitCode:1"),
        (
            json!({"terminated": {"exitCode": 137, "signal": 9}}),
            "Init:Signal:9",
        ),
        (
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
            "Init:Error",
        ),
    ] {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "init", "restartCount": 0, "state": state}]},
        });
        assert_eq!(row_cells("", "pods", &pod)[2], want);
    }
}

#[test]
fn terminating_and_finished_pods() {
    let running = json!({"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}});
    let terminating = json!({
        "metadata": {"name": "old", "creationTimestamp": ago(Duration::days(3)), "deletionTimestamp": ago(Duration::seconds(5))},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}], "containerStatuses": [running]},
    });
    assert_eq!(
        row_cells("", "pods", &terminating),
        json!([
            "old",
            "1/1",
            "Terminating",
            "0",
            "3d",
            "10.0.0.7",
            "node-a",
            "<none>",
            "<none>"
        ])
    );

    let mut lost = terminating.clone();
    lost["status"]["reason"] = json!("NodeLost");
    assert_eq!(row_cells("", "pods", &lost)[2], "Unknown");

    let completed = json!({
        "metadata": {"name": "done", "creationTimestamp": ago(Duration::hours(1)), "deletionTimestamp": ago(Duration::seconds(1))},
        "spec": {"containers": [{"name": "c"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        },
    });
    // A finished pod being deleted keeps its final status.
    assert_eq!(
        cells_of("", "pods", &completed)[1..3],
        [json!("0/1"), json!("Completed")]
    );
    assert_eq!(
        row("", "pods", &completed, IncludeObject::None, now()),
        json!({
            "cells": ["done", "0/1", "Completed", "0", "60m", "<none>", "<none>", "<none>", "<none>"],
            "conditions": [{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}],
        })
    );

    // One container done and another still running is not "Completed".
    let half_done = json!({
        "metadata": {"name": "half"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}},
            ],
        },
    });
    assert_eq!(
        cells_of("", "pods", &half_done)[1..3],
        [json!("1/2"), json!("NotReady")]
    );

    let gated = json!({
        "metadata": {"name": "gated"},
        "spec": {"containers": [{"name": "c"}], "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                {"type": "example.com/lb", "status": "True"},
            ],
        },
    });
    let cells = row_cells("", "pods", &gated);
    assert_eq!(cells[2], "SchedulingGated");
    assert_eq!(cells[4], "<unknown>");
    assert_eq!(cells[8], "1/2");
}

#[test]
fn services() {
    let node_port = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(Duration::minutes(10))},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.12.7",
            "clusterIPs": ["10.96.12.7"],
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "nodePort": 30443, "protocol": "TCP"},
            ],
            "selector": {"tier": "frontend", "app": "web"},
        },
    });
    assert_eq!(
        row_cells("", "services", &node_port),
        json!([
            "web",
            "NodePort",
            "10.96.12.7",
            "<none>",
            "80:30080/TCP,443:30443/TCP",
            "10m",
            "app=web,tier=frontend"
        ])
    );

    let load_balancer = json!({
        "metadata": {"name": "lb", "creationTimestamp": ago(Duration::minutes(10))},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.20",
            "externalIPs": ["198.51.100.1"],
            "ports": [{"port": 53, "nodePort": 31053, "protocol": "UDP"}],
        },
        "status": {"loadBalancer": {"ingress": [{"hostname": "b.example.com"}, {"ip": "203.0.113.5"}]}},
    });
    assert_eq!(
        row_cells("", "services", &load_balancer),
        json!([
            "lb",
            "LoadBalancer",
            "10.96.0.20",
            "203.0.113.5,b.example.com,198.51.100.1",
            "53:31053/UDP",
            "10m",
            "<none>"
        ])
    );
    let mut pending = load_balancer.clone();
    pending["spec"]["externalIPs"] = json!([]);
    pending["status"] = json!({});
    assert_eq!(row_cells("", "services", &pending)[3], "<pending>");

    let external = json!({
        "metadata": {"name": "db"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    });
    assert_eq!(
        row_cells("", "services", &external),
        json!([
            "db",
            "ExternalName",
            "<none>",
            "db.example.com",
            "<none>",
            "<unknown>",
            "<none>"
        ])
    );
}

#[test]
fn nodes() {
    let cordoned = json!({
        "metadata": {
            "name": "cp-1",
            "creationTimestamp": ago(Duration::days(45)),
            "labels": {
                "kubernetes.io/hostname": "cp-1",
                "node-role.kubernetes.io/master": "",
                "node-role.kubernetes.io/control-plane": "",
            },
        },
        "spec": {"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "cp-1"}],
            "nodeInfo": {
                "kubeletVersion": "v1.33.1",
                "osImage": "Ubuntu 24.04.2 LTS",
                "kernelVersion": "6.8.0-60-generic",
                "containerRuntimeVersion": "containerd://2.0.5",
            },
        },
    });
    assert_eq!(
        row_cells("", "nodes", &cordoned),
        json!([
            "cp-1",
            "Ready,SchedulingDisabled",
            "control-plane,master",
            "45d",
            "v1.33.1",
            "192.168.1.10",
            "<none>",
            "Ubuntu 24.04.2 LTS",
            "6.8.0-60-generic",
            "containerd://2.0.5"
        ])
    );

    let fresh = json!({
        "metadata": {"name": "w-1", "creationTimestamp": ago(Duration::seconds(4)), "labels": {"kubernetes.io/role": "worker"}},
        "status": {"addresses": [{"type": "ExternalIP", "address": "203.0.113.9"}]},
    });
    assert_eq!(
        row_cells("", "nodes", &fresh),
        json!([
            "w-1",
            "Unknown",
            "worker",
            "4s",
            "",
            "<none>",
            "203.0.113.9",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
    let mut not_ready = fresh.clone();
    not_ready["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown"}]);
    assert_eq!(row_cells("", "nodes", &not_ready)[1], "NotReady");
}

#[test]
fn jobs() {
    let complete = json!({
        "metadata": {"name": "pi", "creationTimestamp": ago(Duration::minutes(5))},
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "3f1c"}},
            "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34.0"}]}},
        },
        "status": {
            "startTime": ago(Duration::minutes(5)),
            "completionTime": ago(Duration::seconds(255)),
            "succeeded": 1,
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
        },
    });
    assert_eq!(
        row_cells("batch", "jobs", &complete),
        json!([
            "pi",
            "Complete",
            "1/1",
            "45s",
            "5m",
            "pi",
            "perl:5.34.0",
            "batch.kubernetes.io/controller-uid=3f1c"
        ])
    );

    let running = json!({
        "metadata": {"name": "work", "creationTimestamp": ago(Duration::seconds(150))},
        "spec": {"parallelism": 3, "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}}},
        "status": {"startTime": ago(Duration::seconds(150)), "active": 3},
    });
    assert_eq!(
        row_cells("batch", "jobs", &running),
        json!(["work", "Running", "0/1 of 3", "2m30s", "2m30s", "w", "w:1", "<none>"])
    );

    let suspended = json!({
        "metadata": {"name": "later"},
        "spec": {"completions": 5, "suspend": true},
        "status": {"conditions": [{"type": "Suspended", "status": "True"}]},
    });
    assert_eq!(
        cells_of("batch", "jobs", &suspended)[1..4],
        [json!("Suspended"), json!("0/5"), json!("")]
    );
    let failed = json!({"metadata": {"name": "f"}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    assert_eq!(row_cells("batch", "jobs", &failed)[1], "Failed");
}

#[test]
fn endpoints() {
    let ep = |subsets: Value| json!({"metadata": {"name": "web", "creationTimestamp": ago(Duration::days(2))}, "subsets": subsets});
    let truncated = ep(json!([
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
        {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 80}]},
    ]));
    assert_eq!(
        row_cells("", "endpoints", &truncated),
        json!([
            "web",
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more...",
            "2d"
        ])
    );
    let three = ep(
        json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}], "ports": [{"port": 53}]}]),
    );
    assert_eq!(
        row_cells("", "endpoints", &three)[1],
        "10.0.0.1:53,10.0.0.2:53,[fd00::3]:53"
    );
    let headless = ep(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}]));
    assert_eq!(
        row_cells("", "endpoints", &headless)[1],
        "10.0.0.1,10.0.0.2"
    );
    assert_eq!(row_cells("", "endpoints", &ep(json!([])))[1], "<none>");
}

#[test]
fn persistent_volumes_and_claims() {
    let pv = json!({
        "metadata": {"name": "pv-data", "creationTimestamp": ago(Duration::days(3))},
        "spec": {
            "capacity": {"storage": "5Gi"},
            "accessModes": ["ReadOnlyMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "data"},
            "storageClassName": "standard",
            "volumeMode": "Filesystem",
            "hostPath": {"path": "/mnt/data"},
        },
        "status": {"phase": "Bound"},
    });
    assert_eq!(
        row_cells("", "persistentvolumes", &pv),
        json!([
            "pv-data",
            "5Gi",
            "RWO,ROX",
            "Retain",
            "Bound",
            "default/data",
            "standard",
            "<unset>",
            "",
            "3d",
            "Filesystem"
        ])
    );
    let failed = json!({
        "metadata": {"name": "pv-old", "deletionTimestamp": ago(Duration::seconds(3))},
        "spec": {"capacity": {"storage": "1000M"}, "accessModes": ["ReadWriteOncePod"], "persistentVolumeReclaimPolicy": "Recycle"},
        "status": {"phase": "Failed", "reason": "RecyclerFailed"},
    });
    assert_eq!(
        row_cells("", "persistentvolumes", &failed),
        json!([
            "pv-old",
            "1G",
            "RWOP",
            "Recycle",
            "Terminating",
            "",
            "",
            "<unset>",
            "RecyclerFailed",
            "<unknown>",
            "<unset>"
        ])
    );

    let bound = json!({
        "metadata": {"name": "data", "creationTimestamp": ago(Duration::days(3))},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "volumeName": "pv-data",
            "storageClassName": "standard",
            "volumeAttributesClassName": "gold",
            "volumeMode": "Filesystem",
        },
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1.5Gi"}},
    });
    assert_eq!(
        row_cells("", "persistentvolumeclaims", &bound),
        json!([
            "data",
            "Bound",
            "pv-data",
            "1536Mi",
            "RWO",
            "standard",
            "gold",
            "3d",
            "Filesystem"
        ])
    );
    let pending = json!({
        "metadata": {
            "name": "scratch",
            "creationTimestamp": ago(Duration::minutes(1)),
            "annotations": {"volume.beta.kubernetes.io/storage-class": "slow"},
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "standard"},
        "status": {"phase": "Pending"},
    });
    assert_eq!(
        row_cells("", "persistentvolumeclaims", &pending),
        json!(["scratch", "Pending", "", "", "", "slow", "<unset>", "60s", "<unset>"])
    );
}

#[test]
fn workloads() {
    let template =
        |name: &str, image: &str| json!({"spec": {"containers": [{"name": name, "image": image}]}});
    let deployment = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(Duration::hours(2))},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["frontend", "cache"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "proxy", "image": "envoy:1.30"}]}},
        },
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
    });
    assert_eq!(
        row_cells("apps", "deployments", &deployment),
        json!([
            "web",
            "2/3",
            3,
            2,
            "120m",
            "web,proxy",
            "nginx:1.27,envoy:1.30",
            "app=web,!canary,tier in (cache,frontend)"
        ])
    );
    let bare = json!({"metadata": {"name": "bare"}, "spec": {"replicas": 0}});
    assert_eq!(row_cells("apps", "deployments", &bare)[1], "0/0");
    assert_eq!(row_cells("apps", "deployments", &bare)[7], "");
    let bad = json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}});
    assert_eq!(row_cells("apps", "deployments", &bad)[7], "<invalid>");
    assert_eq!(row_cells("apps", "replicasets", &bad)[7], "<error>");

    let rs = json!({
        "metadata": {"name": "web-5d8f", "creationTimestamp": ago(Duration::hours(2))},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"pod-template-hash": "5d8f", "app": "web"}}, "template": template("web", "nginx:1.27")},
        "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3},
    });
    assert_eq!(
        row_cells("apps", "replicasets", &rs),
        json!([
            "web-5d8f",
            3,
            3,
            3,
            "120m",
            "web",
            "nginx:1.27",
            "app=web,pod-template-hash=5d8f"
        ])
    );

    let sts = json!({
        "metadata": {"name": "db", "creationTimestamp": ago(Duration::hours(2))},
        "spec": {"replicas": 3, "template": template("postgres", "postgres:16")},
        "status": {"replicas": 2, "readyReplicas": 1},
    });
    assert_eq!(
        row_cells("apps", "statefulsets", &sts),
        json!(["db", "1/3", "120m", "postgres", "postgres:16"])
    );

    let ds = json!({
        "metadata": {"name": "kube-proxy", "creationTimestamp": ago(Duration::days(45))},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.33.1"}]}},
        },
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2},
    });
    assert_eq!(
        row_cells("apps", "daemonsets", &ds),
        json!([
            "kube-proxy",
            3,
            3,
            2,
            3,
            2,
            "kubernetes.io/os=linux",
            "45d",
            "kube-proxy",
            "registry.k8s.io/kube-proxy:v1.33.1",
            "k8s-app=kube-proxy"
        ])
    );

    let cron = json!({
        "metadata": {"name": "backup", "creationTimestamp": ago(Duration::days(45))},
        "spec": {
            "schedule": "0 3 * * *",
            "timeZone": "Etc/UTC",
            "suspend": false,
            "jobTemplate": {"spec": {"template": template("backup", "restic:0.17")}},
        },
        "status": {"active": [{"kind": "Job", "name": "backup-29145780"}], "lastScheduleTime": ago(Duration::hours(9))},
    });
    assert_eq!(
        row_cells("batch", "cronjobs", &cron),
        json!([
            "backup",
            "0 3 * * *",
            "Etc/UTC",
            "False",
            1,
            "9h",
            "45d",
            "backup",
            "restic:0.17",
            "<none>"
        ])
    );
    let new_cron = json!({"metadata": {"name": "c"}, "spec": {"schedule": "@hourly"}});
    assert_eq!(
        cells_of("batch", "cronjobs", &new_cron)[1..6],
        [
            json!("@hourly"),
            json!("<none>"),
            json!("<unset>"),
            json!(0),
            json!("<none>")
        ]
    );
}

#[test]
fn small_core_resources() {
    let created = ago(Duration::days(45));
    let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": created}, "status": {"phase": "Active"}});
    assert_eq!(
        row_cells("", "namespaces", &ns),
        json!(["kube-system", "Active", "45d"])
    );

    let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": created}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(row_cells("", "configmaps", &cm), json!(["cfg", 3, "45d"]));

    let secret = json!({
        "metadata": {"name": "token", "creationTimestamp": created},
        "type": "kubernetes.io/service-account-token",
        "data": {"ca.crt": "", "namespace": "", "token": ""},
    });
    assert_eq!(
        row_cells("", "secrets", &secret),
        json!(["token", "kubernetes.io/service-account-token", 3, "45d"])
    );

    let lease = json!({
        "metadata": {"name": "kube-scheduler", "creationTimestamp": created},
        "spec": {"holderIdentity": "cp-1_4b1c", "leaseDurationSeconds": 15},
    });
    assert_eq!(
        row_cells("coordination.k8s.io", "leases", &lease),
        json!(["kube-scheduler", "cp-1_4b1c", "45d"])
    );
}

#[test]
fn events() {
    let core = json!({
        "metadata": {"name": "web.17d", "namespace": "default", "creationTimestamp": ago(Duration::minutes(10))},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-7d4b9c", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": ago(Duration::minutes(10)),
        "lastTimestamp": ago(Duration::seconds(30)),
        "count": 12,
        "type": "Warning",
    });
    assert_eq!(
        row_cells("", "events", &core),
        json!([
            "30s",
            "Warning",
            "BackOff",
            "pod/web-7d4b9c",
            "spec.containers{app}",
            "kubelet, node-a",
            "Back-off restarting failed container",
            "10m",
            12,
            "web.17d"
        ])
    );

    let event_time = (now() - Duration::minutes(2)).to_rfc3339_opts(SecondsFormat::Micros, true);
    let series = json!({
        "metadata": {"name": "p.18a"},
        "eventTime": event_time,
        "series": {"count": 4, "lastObservedTime": ago(Duration::seconds(20))},
        "reportingController": "default-scheduler",
        "reportingInstance": "",
        "regarding": {"kind": "Pod", "name": "p"},
        "note": "0/3 nodes are available",
        "reason": "FailedScheduling",
        "type": "Warning",
        "action": "Scheduling",
    });
    assert_eq!(
        row_cells("events.k8s.io", "events", &series),
        json!([
            "20s",
            "Warning",
            "FailedScheduling",
            "pod/p",
            "",
            "default-scheduler",
            "0/3 nodes are available",
            "2m",
            4,
            "p.18a"
        ])
    );

    let singleton = json!({
        "metadata": {"name": "n.1"},
        "eventTime": event_time,
        "involvedObject": {"kind": "Node"},
        "reportingComponent": "kubelet",
        "reportingController": "kubelet",
        "reportingInstance": "node-a",
        "reason": "Starting",
        "message": "Starting kubelet.",
        "type": "Normal",
    });
    assert_eq!(
        row_cells("", "events", &singleton),
        json!([
            "2m",
            "Normal",
            "Starting",
            "node",
            "",
            "kubelet, node-a",
            "Starting kubelet.",
            "2m",
            1,
            "n.1"
        ])
    );
}

#[test]
fn table_copies_list_metadata_and_includes_objects() {
    let ns = json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "default", "uid": "u1", "resourceVersion": "7", "creationTimestamp": ago(Duration::days(1))},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    });
    let list_meta = json!({"resourceVersion": "123", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", "remainingItemCount": 5});
    let t = table(
        "",
        "namespaces",
        std::slice::from_ref(&ns),
        &list_meta,
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], list_meta);
    assert_eq!(
        t["columnDefinitions"][1],
        json!({"name": "Status", "type": "string", "format": "", "description": "Current phase of the namespace, such as Active or Terminating.", "priority": 0})
    );
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(
        t["rows"],
        json!([{
            "cells": ["default", "Active", "24h"],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": ns["metadata"]},
        }])
    );

    let t = table(
        "",
        "namespaces",
        std::slice::from_ref(&ns),
        &json!({"resourceVersion": "9", "continue": ""}),
        IncludeObject::None,
        now(),
    );
    assert_eq!(t["metadata"], json!({"resourceVersion": "9"}));
    assert_eq!(t["rows"], json!([{"cells": ["default", "Active", "24h"]}]));

    let t = table(
        "",
        "namespaces",
        std::slice::from_ref(&ns),
        &json!({}),
        IncludeObject::Object,
        now(),
    );
    assert_eq!(t["metadata"], json!({}));
    assert_eq!(t["rows"][0]["object"], ns);

    let empty = table(
        "apps",
        "deployments",
        &[],
        &json!({"resourceVersion": "1"}),
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(empty["columnDefinitions"].as_array().map(Vec::len), Some(8));
}

#[test]
fn include_object_query() {
    assert_eq!(IncludeObject::from_query(None), Ok(IncludeObject::Metadata));
    assert_eq!(
        IncludeObject::from_query(Some("")),
        Ok(IncludeObject::Metadata)
    );
    assert_eq!(
        IncludeObject::from_query(Some("Metadata")),
        Ok(IncludeObject::Metadata)
    );
    assert_eq!(
        IncludeObject::from_query(Some("None")),
        Ok(IncludeObject::None)
    );
    assert_eq!(
        IncludeObject::from_query(Some("Object")),
        Ok(IncludeObject::Object)
    );
    assert_eq!(
        IncludeObject::from_query(Some("object")),
        Err("unrecognized includeObject value: \"object\"".to_string())
    );
}
