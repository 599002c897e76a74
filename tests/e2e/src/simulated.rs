//! Simulated nodes: Node objects with capacity and a Ready condition, their Leases renewed, and
//! a stand-in kubelet that moves pods bound to them to Running and Ready, finishes pods that
//! ask to (annotation [`EXIT_CODE_ANNOTATION`]), and confirms graceful deletions — all without
//! containers. A node can be made to fall silent (as a dead host) and to come back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use crate::ControlPlane;

/// A pod carrying this annotation terminates with that exit code once it has run for
/// [`RUN_BEFORE_EXIT`]: `Succeeded` for 0, `Failed` otherwise.
pub const EXIT_CODE_ANNOTATION: &str = "e2e.hakube.io/exit-code";
const RUN_BEFORE_EXIT: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_millis(500);
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Nodes kept alive by a background thread until dropped.
pub struct SimulatedNodes {
    silent: Arc<Mutex<BTreeSet<String>>>,
    nodes: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    client: kube::Client,
    runtime: Arc<tokio::runtime::Runtime>,
}

/// A node to create: its name, labels and allocatable resources.
pub struct NodeTemplate {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

impl NodeTemplate {
    /// A node with 4 CPUs, 8 GiB and room for 110 pods, in zone `zone`.
    pub fn new(name: &str, zone: &str) -> NodeTemplate {
        NodeTemplate {
            name: name.to_string(),
            labels: BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.to_string()),
                ("topology.kubernetes.io/zone".to_string(), zone.to_string()),
            ]),
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
        }
    }
}

impl SimulatedNodes {
    /// Creates `nodes` (all in zone `zone-a`) and keeps them alive.
    pub fn start(cp: &ControlPlane, nodes: &[&str]) -> SimulatedNodes {
        let templates: Vec<_> = nodes
            .iter()
            .map(|n| NodeTemplate::new(n, "zone-a"))
            .collect();
        Self::start_with(cp, templates)
    }

    pub fn start_with(cp: &ControlPlane, nodes: Vec<NodeTemplate>) -> SimulatedNodes {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime"),
        );
        let client = runtime.block_on(cp.kube_client());
        let simulated = SimulatedNodes {
            silent: Arc::default(),
            nodes: Arc::default(),
            stop: Arc::default(),
            thread: None,
            client,
            runtime,
        };
        for template in nodes {
            simulated.add(template);
        }
        let mut simulated = simulated;
        let kubelet = Kubelet {
            client: simulated.client.clone(),
            nodes: simulated.nodes.clone(),
            silent: simulated.silent.clone(),
        };
        let stop = simulated.stop.clone();
        let runtime = simulated.runtime.clone();
        simulated.thread = Some(std::thread::spawn(move || {
            runtime.block_on(async move {
                let heartbeats = tokio::spawn(kubelet.clone().heartbeat_forever());
                let pods = tokio::spawn(kubelet.run_pods_forever());
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                heartbeats.abort();
                pods.abort();
            });
        }));
        simulated
    }

    /// Creates another node and keeps it alive.
    pub fn add(&self, template: NodeTemplate) {
        let resources = json!({"cpu": template.cpu, "memory": template.memory,
                               "pods": template.pods.to_string()});
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": template.name, "labels": template.labels},
            "status": {"capacity": resources, "allocatable": resources},
        }))
        .expect("a valid Node");
        let api = Api::<Node>::all(self.client.clone());
        self.runtime.block_on(async {
            api.patch(
                &template.name,
                &PatchParams::apply("e2e-simulated-kubelet").force(),
                &Patch::Apply(&node),
            )
            .await
            .expect("creating a simulated Node");
            // The API server keeps a Node's status out of writes to the Node itself.
            api.patch_status(
                &template.name,
                &PatchParams::default(),
                &Patch::Merge(
                    &json!({"status": {"capacity": resources, "allocatable": resources}}),
                ),
            )
            .await
            .expect("a simulated Node's capacity");
            ready_status(&api, &template.name)
                .await
                .expect("a simulated Node's status");
        });
        lock(&self.nodes).insert(template.name);
    }

    /// The node stops renewing its Lease and its kubelet stops acting (a dead host).
    pub fn silence(&self, node: &str) {
        lock(&self.silent).insert(node.to_string());
    }

    /// The node's kubelet is back: Lease renewed, Ready reported again.
    pub fn revive(&self, node: &str) {
        lock(&self.silent).remove(node);
    }
}

impl Drop for SimulatedNodes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct Kubelet {
    client: kube::Client,
    nodes: Arc<Mutex<BTreeSet<String>>>,
    silent: Arc<Mutex<BTreeSet<String>>>,
}

fn now() -> String {
    Timestamp::now().to_string()
}

/// Reports the node Ready with a fresh heartbeat, as a kubelet does on start and on return.
async fn ready_status(api: &Api<Node>, name: &str) -> Result<Node, kube::Error> {
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status (simulated)",
        "lastHeartbeatTime": now(), "lastTransitionTime": now(),
    }]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await
}

impl Kubelet {
    fn alive(&self, node: &str) -> bool {
        lock(&self.nodes).contains(node) && !lock(&self.silent).contains(node)
    }

    async fn heartbeat_forever(self) {
        let leases = Api::<Lease>::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let nodes = Api::<Node>::all(self.client.clone());
        loop {
            let live: Vec<String> = lock(&self.nodes)
                .iter()
                .filter(|n| !lock(&self.silent).contains(*n))
                .cloned()
                .collect();
            for name in live {
                let lease = Lease {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.clone()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(MicroTime(Timestamp::now())),
                        ..Default::default()
                    }),
                };
                let _ = leases
                    .patch(
                        &name,
                        &PatchParams::apply("e2e-simulated-kubelet").force(),
                        &Patch::Apply(&lease),
                    )
                    .await;
                let ready = nodes.get_opt(&name).await.ok().flatten().is_some_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
                if !ready {
                    let _ = ready_status(&nodes, &name).await;
                }
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }

    async fn run_pods_forever(self) {
        let pods = Api::<Pod>::all(self.client.clone());
        let mut events = watcher(pods, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                _ => continue,
            };
            let kubelet = self.clone();
            tokio::spawn(async move { kubelet.handle(pod).await });
        }
    }

    /// What a kubelet does for one pod bound to one of its nodes.
    async fn handle(&self, pod: Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        if !self.alive(&node) {
            return;
        }
        let (Some(namespace), Some(name)) =
            (pod.metadata.namespace.clone(), pod.metadata.name.clone())
        else {
            return;
        };
        let api = Api::<Pod>::namespaced(self.client.clone(), &namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
            return;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return;
        }
        let exit_code = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(EXIT_CODE_ANNOTATION))
            .and_then(|c| c.parse::<i32>().ok());
        if phase != "Running" {
            let status = running_status(&pod, &node);
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await;
            if exit_code.is_none() {
                return;
            }
        }
        if let Some(code) = exit_code {
            tokio::time::sleep(RUN_BEFORE_EXIT).await;
            let status = terminated_status(&pod, code);
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await;
        }
    }
}

fn container_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

fn pod_ip(pod: &Pod) -> String {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let hash = uid
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    format!(
        "10.{}.{}.{}",
        100 + (hash >> 16) % 100,
        (hash >> 8) % 256,
        1 + hash % 254
    )
}

fn running_status(pod: &Pod, _node: &str) -> Value {
    let condition =
        |type_: &str| json!({"type": type_, "status": "True", "lastTransitionTime": now()});
    let statuses: Vec<Value> = container_names(pod)
        .iter()
        .map(|name| json!({"name": name, "ready": true, "started": true, "restartCount": 0,
                            "image": "simulated", "imageID": "", "containerID": format!("simulated://{name}"),
                            "state": {"running": {"startedAt": now()}}}))
        .collect();
    let ip = pod_ip(pod);
    json!({"status": {
        "phase": "Running", "startTime": now(), "hostIP": "10.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
        "containerStatuses": statuses,
    }})
}

fn terminated_status(pod: &Pod, code: i32) -> Value {
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let reason = if code == 0 { "Completed" } else { "Error" };
    let condition = |type_: &str, status: &str| json!({"type": type_, "status": status, "lastTransitionTime": now()});
    let statuses: Vec<Value> = container_names(pod)
        .iter()
        .map(|name| json!({"name": name, "ready": false, "started": false, "restartCount": 0,
                            "image": "simulated", "imageID": "", "containerID": format!("simulated://{name}"),
                            "state": {"terminated": {"exitCode": code, "reason": reason,
                                                     "startedAt": now(), "finishedAt": now()}}}))
        .collect();
    json!({"status": {
        "phase": phase,
        "conditions": [condition("PodScheduled", "True"), condition("Initialized", "True"),
                       condition("ContainersReady", "False"), condition("Ready", "False")],
        "containerStatuses": statuses,
    }})
}
