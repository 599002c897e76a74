//! The Pod the watch-cache benchmarks store: what a Deployment's replica looks like once the
//! kubelet has reported it running, padded to a fixed JSON size.

use serde_json::{json, Value};

/// The annotation that pads each Pod to its size.
const PADDING: &str = "bench/padding";

/// Pod `index` of the run, with spec and status, `size` bytes of compact JSON when that is at
/// least its natural size. The API server drops `status` on create (as upstream does), so it
/// is written again through the status subresource; [`status`] is that part.
pub fn pod(index: usize, size: usize) -> Value {
    let name = name(index);
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "bench",
            "labels": {
                "app.kubernetes.io/name": "bench-web",
                "app.kubernetes.io/component": "frontend",
                "pod-template-hash": "7d4b9c8f6d",
                "tier": "web",
            },
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                PADDING: "",
            },
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example.com/bench/web:1.27.3",
                "args": ["--listen=:8080", "--metrics=:9090", "--log-format=json"],
                "env": [
                    {"name": "POD_NAME", "value": name},
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "CACHE_SIZE_MB", "value": "64"},
                ],
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080},
                    "periodSeconds": 10,
                },
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
        "status": status(index),
    });
    let natural = serde_json::to_vec(&pod).map(|b| b.len()).unwrap_or(size);
    pod["metadata"]["annotations"][PADDING] = json!("x".repeat(size.saturating_sub(natural)));
    pod
}

pub fn name(index: usize) -> String {
    format!("pod-{index:05}")
}

/// A running Pod's status, as its kubelet would report it.
pub fn status(index: usize) -> Value {
    let at = "2026-11-22T10:00:00Z";
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": at});
    json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers"),
            condition("Initialized"),
            condition("Ready"),
            condition("ContainersReady"),
            condition("PodScheduled"),
        ],
        "hostIP": "10.0.0.7",
        "podIP": format!("10.244.{}.{}", index / 250, index % 250 + 2),
        "startTime": at,
        "containerStatuses": [{
            "name": "web",
            "ready": true,
            "started": true,
            "restartCount": 0,
            "image": "registry.example.com/bench/web:1.27.3",
            "imageID": "registry.example.com/bench/web@sha256:4f7a3c1e9b2d8a6f5e0c7b1d3a9e8f2c6b4d0a1e7f3c9b5d2a8e6f4c0b1d7a3e",
            "containerID": format!("containerd://{index:064x}"),
            "state": {"running": {"startedAt": at}},
        }],
        "qosClass": "Burstable",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_padded_to_the_size_asked_for() {
        let json = serde_json::to_vec(&pod(42, 2048)).unwrap();
        assert_eq!(json.len(), 2048);
        // Smaller than natural: no padding, never truncated.
        let small = pod(42, 10);
        assert_eq!(small["metadata"]["annotations"][PADDING], "");
        assert_eq!(small["status"]["conditions"][2]["type"], "Ready");
    }
}
