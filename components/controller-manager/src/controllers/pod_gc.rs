//! pod-garbage-collector-controller: deletes pods bound to nodes that no longer exist (after a
//! quarantine and a live look-up of the node), the oldest terminated pods beyond
//! `--terminated-pod-gc-threshold`, terminating pods that never reached a node, and
//! terminating pods on a not-ready node tainted out-of-service. A pod that has not finished
//! is marked Failed first, with a `DisruptionTarget` condition where upstream sets one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::context::Context;
use crate::controllers::informer;

const QUEUE: &str = "pod_garbage_collector";
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deleting pod {pod}: {source}")]
    Delete { pod: String, source: kube::Error },
    #[error("looking up node {node}: {source}")]
    Node { node: String, source: kube::Error },
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminated(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// The terminated pods to delete so that at most `threshold` remain: evicted ones first, then
/// the oldest (0 keeps them all).
pub fn excess_terminated(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<Arc<Pod>> = pods.iter().filter(|p| terminated(p)).cloned().collect();
    let excess = done.len().saturating_sub(threshold);
    done.sort_by(|a, b| {
        evicted(b)
            .cmp(&evicted(a))
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    done.truncate(excess);
    done
}

/// Terminating pods that never reached a node.
pub fn unscheduled_terminating(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_none())
        .cloned()
        .collect()
}

/// Terminating pods on nodes that are not Ready and carry the out-of-service taint.
pub fn terminating_out_of_service(
    pods: &[Arc<Pod>],
    nodes: &HashMap<String, Arc<Node>>,
) -> Vec<Arc<Pod>> {
    let out_of_service = |node: &Node| {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        let tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| {
                t.iter()
                    .any(|t| t.key == OUT_OF_SERVICE && t.effect == "NoExecute")
            });
        !ready && tainted
    };
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !terminated(p))
        .filter(|p| {
            node_name(p)
                .and_then(|n| nodes.get(n))
                .is_some_and(|n| out_of_service(n))
        })
        .cloned()
        .collect()
}

/// Names of nodes pods are bound to that the cache does not know.
pub fn missing_nodes(pods: &[Arc<Pod>], nodes: &HashMap<String, Arc<Node>>) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| node_name(p))
        .filter(|n| !nodes.contains_key(*n))
        .map(str::to_string)
        .collect()
}

/// The status patch that marks an unfinished pod Failed (with `condition` when given).
pub fn failed_status(pod: &Pod, condition: Option<(&str, &str)>) -> Option<Value> {
    if terminated(pod) {
        return None;
    }
    let mut status = json!({"phase": "Failed"});
    if let Some((reason, message)) = condition {
        status["conditions"] = json!([{
            "type": "DisruptionTarget", "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": Timestamp::now().to_string(),
        }]);
    }
    Some(json!({ "status": status }))
}

pub async fn run(ctx: Arc<Context>) {
    let changed = Arc::new(Notify::new());
    let pods = informer::cache(
        Api::<Pod>::all(ctx.client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    let nodes = informer::cache(
        Api::<Node>::all(ctx.client.clone()),
        watcher::Config::default(),
        changed,
    );
    if pods.wait_until_ready().await.is_err() || nodes.wait_until_ready().await.is_err() {
        return;
    }
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(ctx.options.pod_gc_check_period);
    loop {
        tick.tick().await;
        let timer = ctx.metrics.sync(QUEUE);
        let result = collect(&ctx, &pods.state(), &nodes.state(), &mut missing_since).await;
        if let Err(error) = &result {
            tracing::warn!(%error, "pod garbage collection failed");
        }
        timer.done(result.is_ok());
    }
}

async fn collect(
    ctx: &Context,
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    missing_since: &mut HashMap<String, Instant>,
) -> Result<(), Error> {
    let nodes: HashMap<String, Arc<Node>> =
        nodes.iter().map(|n| (n.name_any(), n.clone())).collect();
    let mut first_error = None;
    let mut note = |r: Result<(), Error>| {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    };
    for pod in excess_terminated(pods, ctx.options.terminated_pod_gc_threshold) {
        note(fail_and_delete(ctx, &pod, None).await);
    }
    for pod in terminating_out_of_service(pods, &nodes) {
        note(
            fail_and_delete(
                ctx,
                &pod,
                Some(("DeletionByPodGC", "PodGC: node is out of service")),
            )
            .await,
        );
    }
    // Orphans: a node missing from the cache is looked up for real once its quarantine is over,
    // so a node the cache has not caught up with never loses its pods.
    let missing = missing_nodes(pods, &nodes);
    missing_since.retain(|n, _| missing.contains(n));
    let now = Instant::now();
    let api = Api::<Node>::all(ctx.client.clone());
    for node in missing {
        let since = *missing_since.entry(node.clone()).or_insert(now);
        if now.duration_since(since) < ctx.options.pod_gc_quarantine_time {
            continue;
        }
        match api.get_opt(&node).await {
            Ok(Some(_)) => {
                missing_since.remove(&node);
                continue;
            }
            Ok(None) => {}
            Err(source) => {
                note(Err(Error::Node { node, source }));
                continue;
            }
        }
        for pod in pods.iter().filter(|p| node_name(p) == Some(node.as_str())) {
            tracing::info!(pod = %pod.name_any(), node = %node, "deleting a pod whose node is gone");
            note(
                fail_and_delete(
                    ctx,
                    pod,
                    Some(("DeletionByPodGC", "PodGC: node no longer exists")),
                )
                .await,
            );
        }
    }
    for pod in unscheduled_terminating(pods) {
        note(fail_and_delete(ctx, &pod, None).await);
    }
    first_error.map_or(Ok(()), Err)
}

/// Marks the pod Failed (unless finished) and deletes it without grace.
async fn fail_and_delete(
    ctx: &Context,
    pod: &Pod,
    condition: Option<(&str, &str)>,
) -> Result<(), Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let key = format!("{namespace}/{name}");
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    if let Some(status) = failed_status(pod, condition) {
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
            .await
        {
            Ok(_) => {}
            Err(e) if gone(&e) => return Ok(()),
            Err(source) => return Err(Error::Delete { pod: key, source }),
        }
    }
    match api
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %key, "garbage collected");
            Ok(())
        }
        Err(e) if gone(&e) => Ok(()),
        Err(source) => Err(Error::Delete { pod: key, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, created: i64, phase: &str, node: Option<&str>) -> Arc<Pod> {
        let mut pod = Pod {
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        pod.metadata.name = Some(name.into());
        pod.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        Arc::new(pod)
    }

    #[test]
    fn the_oldest_terminated_pods_beyond_the_threshold_go() {
        let pods = vec![
            pod("new", 30, "Succeeded", Some("n")),
            pod("old", 10, "Failed", Some("n")),
            pod("mid", 20, "Succeeded", Some("n")),
            pod("running", 1, "Running", Some("n")),
        ];
        let names: Vec<String> = excess_terminated(&pods, 1)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, vec!["old", "mid"]);
        assert!(excess_terminated(&pods, 3).is_empty());
        assert!(excess_terminated(&pods, 0).is_empty(), "0 disables");
    }

    #[test]
    fn orphans_and_unscheduled_terminating_pods_are_found() {
        let nodes = HashMap::from([("here".to_string(), Arc::new(Node::default()))]);
        let pods = vec![
            pod("a", 1, "Running", Some("here")),
            pod("b", 1, "Running", Some("gone")),
            pod("c", 1, "Pending", None),
        ];
        assert_eq!(
            missing_nodes(&pods, &nodes),
            BTreeSet::from(["gone".to_string()])
        );
        assert!(unscheduled_terminating(&pods).is_empty());
        let mut terminating = (*pods[2]).clone();
        terminating.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(unscheduled_terminating(&[Arc::new(terminating)]).len(), 1);
    }

    #[test]
    fn unfinished_pods_are_marked_failed_with_the_condition() {
        let running = pod("a", 1, "Running", Some("gone"));
        let status = failed_status(
            &running,
            Some(("DeletionByPodGC", "PodGC: node no longer exists")),
        )
        .unwrap();
        assert_eq!(status["status"]["phase"], "Failed");
        assert_eq!(
            status["status"]["conditions"][0]["reason"],
            "DeletionByPodGC"
        );
        assert!(failed_status(&pod("b", 1, "Succeeded", None), None).is_none());
    }
}
