//! taint-eviction-controller: pods on a node with a NoExecute taint they do not tolerate are
//! deleted at once; pods tolerating it for `tolerationSeconds` are deleted once that time has
//! passed since the taint was added; an eviction is called off when the taint goes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;

use crate::context::Context;
use crate::controllers::informer;

const QUEUE: &str = "taint_eviction_controller";
const CONTROLLER: &str = "taint-eviction-controller";
const NO_EXECUTE: &str = "NoExecute";
/// The longest this controller sleeps when no eviction is due sooner.
const IDLE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("evicting pod {pod}: {source}")]
    Evict { pod: String, source: kube::Error },
}

/// Whether `toleration` tolerates `taint` (key, operator Exists/Equal, value and effect).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// What is to become of a pod on a node with these taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No NoExecute taint, or all tolerated forever.
    Stay,
    /// Some NoExecute taint is not tolerated.
    EvictNow,
    /// Every NoExecute taint is tolerated, the shortest for this long after the taint came.
    EvictAt(Timestamp),
}

/// The pod's fate: evicted now when a NoExecute taint is not tolerated, at the earliest taint's
/// `timeAdded` (or `seen` when unstamped) plus the least `tolerationSeconds` of the tolerations
/// in use, or never when none of those sets a limit.
pub fn plan(pod: &Pod, taints: &[Taint], seen: Timestamp) -> Plan {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == NO_EXECUTE).collect();
    if no_execute.is_empty() {
        return Plan::Stay;
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut used: Vec<&Toleration> = Vec::new();
    for taint in &no_execute {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Plan::EvictNow;
        }
        used.extend(matching);
    }
    let limit = used.iter().filter_map(|t| t.toleration_seconds).min();
    let Some(seconds) = limit else {
        return Plan::Stay;
    };
    if seconds <= 0 {
        return Plan::EvictNow;
    }
    let start = no_execute
        .iter()
        .map(|t| t.time_added.as_ref().map_or(seen, |t| t.0))
        .min()
        .unwrap_or(seen);
    Plan::EvictAt(start + SignedDuration::from_secs(seconds))
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

struct TaintEviction {
    ctx: Arc<Context>,
    recorder: Recorder,
    /// Pods with an eviction scheduled, and when.
    scheduled: HashMap<String, Timestamp>,
    /// When a NoExecute taint without `timeAdded` was first seen on a node.
    first_seen: HashMap<String, Timestamp>,
    /// Pods already deleted, by uid, so a lagging cache does not delete twice.
    evicted: HashSet<String>,
}

pub async fn run(ctx: Arc<Context>) {
    let changed = Arc::new(Notify::new());
    let nodes = informer::cache(
        Api::<Node>::all(ctx.client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    let pods = informer::cache(
        Api::<Pod>::all(ctx.client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    if nodes.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
        return;
    }
    let mut controller = TaintEviction {
        recorder: ctx.recorder(CONTROLLER),
        ctx: ctx.clone(),
        scheduled: HashMap::new(),
        first_seen: HashMap::new(),
        evicted: HashSet::new(),
    };
    loop {
        let timer = ctx.metrics.sync(QUEUE);
        let result = controller.pass(&nodes, &pods).await;
        timer.done(result.is_ok());
        if let Err(error) = &result {
            tracing::warn!(%error, "taint eviction pass failed");
        }
        let now = Timestamp::now();
        let next = controller
            .scheduled
            .values()
            .map(|at| at.duration_since(now).try_into().unwrap_or(Duration::ZERO))
            .min()
            .unwrap_or(IDLE)
            .min(IDLE);
        let next = if result.is_err() {
            next.min(Duration::from_secs(1))
        } else {
            next
        };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(next) => {}
        }
    }
}

impl TaintEviction {
    async fn pass(
        &mut self,
        nodes: &kube::runtime::reflector::Store<Node>,
        pods: &kube::runtime::reflector::Store<Pod>,
    ) -> Result<(), Error> {
        let now = Timestamp::now();
        let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
        for node in nodes.state() {
            let taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.effect == NO_EXECUTE)
                .collect();
            if !taints.is_empty() {
                tainted.insert(node.name_any(), taints);
            }
        }
        self.first_seen.retain(|node, _| tainted.contains_key(node));
        for node in tainted.keys() {
            self.first_seen.entry(node.clone()).or_insert(now);
        }
        let live: HashSet<String> = pods.state().iter().filter_map(|p| p.uid()).collect();
        self.evicted.retain(|uid| live.contains(uid));
        let mut still_scheduled = HashMap::new();
        let mut first_error = None;
        for pod in pods.state() {
            if pod.metadata.deletion_timestamp.is_some()
                || pod.uid().is_some_and(|u| self.evicted.contains(&u))
            {
                continue;
            }
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let key = pod_key(&pod);
            let taints = tainted.get(&node).map(Vec::as_slice).unwrap_or_default();
            let seen = self.first_seen.get(&node).copied().unwrap_or(now);
            match plan(&pod, taints, seen) {
                Plan::Stay => {
                    if self.scheduled.contains_key(&key) {
                        self.event(&pod, format!("Cancelling deletion of Pod {key}"))
                            .await;
                    }
                }
                Plan::EvictAt(at) if at > now => {
                    still_scheduled.insert(key, at);
                }
                Plan::EvictNow | Plan::EvictAt(_) => {
                    if let Err(error) = self.evict(&pod).await {
                        first_error.get_or_insert(error);
                    }
                }
            }
        }
        // Pods that went away (or left a tainted node) while waiting are simply forgotten;
        // those whose taint went are cancelled above.
        self.scheduled = still_scheduled;
        first_error.map_or(Ok(()), Err)
    }

    /// Marks the pod as disrupted by the taint manager, then deletes it.
    async fn evict(&mut self, pod: &Pod) -> Result<(), Error> {
        let key = pod_key(pod);
        let name = pod.name_any();
        let api = Api::<Pod>::namespaced(
            self.ctx.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        self.event(pod, format!("Marking for deletion Pod {key}"))
            .await;
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Timestamp::now().to_string(),
        }]}});
        let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(&condition),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if gone(&e) => return Ok(()),
            Err(source) => return Err(Error::Evict { pod: key, source }),
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if gone(&e) => {}
            Err(source) => return Err(Error::Evict { pod: key, source }),
        }
        tracing::info!(pod = %key, "evicted for a NoExecute taint");
        if let Some(uid) = pod.uid() {
            self.evicted.insert(uid);
        }
        Ok(())
    }

    async fn event(&self, pod: &Pod, note: String) {
        let event = Event {
            type_: EventType::Normal,
            reason: "TaintManagerEviction".into(),
            note: Some(note),
            action: "Delete".into(),
            secondary: None,
        };
        let reference = pod.object_ref(&());
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::debug!(%error, "publishing an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn unreachable(added: Timestamp) -> Taint {
        Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: NO_EXECUTE.into(),
            time_added: Some(Time(added)),
            value: None,
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn untolerated_taints_evict_at_once() {
        let now = Timestamp::now();
        assert_eq!(plan(&pod(vec![]), &[unreachable(now)], now), Plan::EvictNow);
        assert_eq!(plan(&pod(vec![]), &[], now), Plan::Stay);
        let other = toleration("example.com/x", None);
        assert_eq!(
            plan(&pod(vec![other]), &[unreachable(now)], now),
            Plan::EvictNow
        );
    }

    #[test]
    fn toleration_seconds_count_from_the_taint() {
        let added = Timestamp::from_second(1_000).unwrap();
        let p = pod(vec![toleration("node.kubernetes.io/unreachable", Some(5))]);
        assert_eq!(
            plan(&p, &[unreachable(added)], Timestamp::now()),
            Plan::EvictAt(Timestamp::from_second(1_005).unwrap())
        );
        let forever = pod(vec![toleration("node.kubernetes.io/unreachable", None)]);
        assert_eq!(
            plan(&forever, &[unreachable(added)], Timestamp::now()),
            Plan::Stay
        );
        // The least limit of the tolerations in use wins.
        let both = pod(vec![
            toleration("node.kubernetes.io/unreachable", None),
            toleration("", Some(3)),
        ]);
        assert_eq!(
            plan(&both, &[unreachable(added)], Timestamp::now()),
            Plan::EvictAt(Timestamp::from_second(1_003).unwrap())
        );
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: NO_EXECUTE.into(),
            time_added: None,
        };
        let equal = Toleration {
            key: Some("k".into()),
            value: Some("v".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&equal, &taint));
        let wrong_value = Toleration {
            value: Some("w".into()),
            ..equal.clone()
        };
        assert!(!tolerates(&wrong_value, &taint));
        let wrong_effect = Toleration {
            effect: Some("NoSchedule".into()),
            ..equal
        };
        assert!(!tolerates(&wrong_effect, &taint));
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&everything, &taint));
    }
}
