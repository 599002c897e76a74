//! daemonset-controller: one pod per eligible node. A node is eligible when the pod's
//! nodeSelector and required node affinity select it and the pod (with the tolerations
//! upstream adds to daemon pods) tolerates its NoSchedule/NoExecute taints. Each pod is pinned
//! by a required node affinity on `metadata.name`, for the scheduler to bind. Template
//! changes roll out through RollingUpdate (maxUnavailable/maxSurge) or OnDelete, with
//! ControllerRevisions as history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::controllers::pod_control::{
    self, controller_ref, is_available, is_conflict_or_gone, is_ready, key_of, owned_by, phase,
    Expectations,
};
use crate::controllers::revision::{self, HASH_LABEL};

const QUEUE: &str = "daemonset";
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("daemonset {daemonset}: {source}")]
    Api {
        daemonset: String,
        source: kube::Error,
    },
}

struct Shared {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    expectations: Expectations,
    recorder: Recorder,
}

pub async fn run(ctx: Arc<Context>) {
    let (pods, pod_events) = pod_control::reflect(Api::<Pod>::all(ctx.client.clone()));
    let (nodes, node_events) = pod_control::reflect(Api::<Node>::all(ctx.client.clone()));
    let shared = Arc::new(Shared {
        recorder: ctx.recorder("daemonset-controller"),
        pods,
        nodes,
        expectations: Expectations::default(),
        ctx: ctx.clone(),
    });
    let controller = Controller::new(
        Api::<DaemonSet>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let daemonsets = controller.store();
    // Any node change may change where every DaemonSet runs.
    controller
        .owns_stream(pod_events)
        .watches_stream(node_events, move |_| {
            daemonsets
                .state()
                .iter()
                .map(|d| ObjectRef::from_obj(d.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(controller::Config::default().concurrency(ctx.options.concurrency.daemonset))
        .run(reconcile, error_policy, shared)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_: Arc<DaemonSet>, error: &Error, _: Arc<Shared>) -> Action {
    tracing::warn!(%error, "daemonset sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(ds: Arc<DaemonSet>, shared: Arc<Shared>) -> Result<Action, Error> {
    let timer = shared.ctx.metrics.sync(QUEUE);
    let result = sync(&ds, &shared).await.map_err(|source| Error::Api {
        daemonset: key_of(&ds.metadata),
        source,
    });
    timer.done(result.is_ok());
    result
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The tolerations upstream adds to every daemon pod, so node conditions never evict it nor
/// keep it off a node.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut all = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        all.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    all
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let exists = toleration.operator.as_deref() == Some("Exists");
    match toleration.key.as_deref() {
        None | Some("") => exists,
        Some(key) if key != taint.key => false,
        Some(_) => {
            exists
                || toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let fields = BTreeMap::from([("metadata.name".to_string(), node.name_any())]);
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let field_reqs = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && field_reqs.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && field_reqs
            .iter()
            .all(|r| requirement_matches(r, fields.get(&r.key)))
}

/// Whether the node passes the pod's nodeSelector and required node affinity.
pub fn selects_node(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// (should run a new pod there, may keep running an existing one there).
pub fn node_should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if !selects_node(spec, node) {
        return (false, false);
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(daemon_tolerations(spec.host_network == Some(true)));
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let keep = !untolerated("NoExecute");
    (keep && !untolerated("NoSchedule"), keep)
}

/// The daemon pod for `node`: the template's pod with the added tolerations and pinned to
/// the node through a required node affinity on `metadata.name`.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = pod_control::pod_from_template(&template, controller_ref(ds));
    pod.metadata.namespace = ds.namespace();
    pod.metadata.generate_name = Some(format!("{}-", ds.name_any()));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(HASH_LABEL.into(), hash.into());
    labels.insert(
        TEMPLATE_GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(0).to_string(),
    );
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for added in daemon_tolerations(host_network) {
        if !tolerations
            .iter()
            .any(|t| t.key == added.key && t.effect == added.effect)
        {
            tolerations.push(added);
        }
    }
    let pin = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.to_string()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: Vec::new(),
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![pin.clone()]);
    }
    pod
}

/// The node a daemon pod is for: where it is bound, else its `metadata.name` affinity.
pub fn pod_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = &spec.node_name {
        return Some(node.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// Resolves an absolute or percentage value against `total` (percentages round up for
/// surge, down for unavailability, as upstream).
pub fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let percent: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = percent * f64::from(total) / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

/// One sync's decisions.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<String>,
    pub status: DaemonSetStatus,
}

/// What to create (node names) and delete (pod names), and the status, given the nodes, the
/// DaemonSet's pods and the current template hash.
pub fn plan(ds: &DaemonSet, nodes: &[&Node], pods: &[&Pod], hash: &str, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = ds.spec.as_ref() else {
        return plan;
    };
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        if let Some(node) = pod_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        != Some("OnDelete");
    let rolling_update = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let mut desired = 0;
    let mut wanted: Vec<(String, Vec<&Pod>)> = Vec::new();
    let status = &mut plan.status;
    for node in nodes {
        let name = node.name_any();
        let (should_run, should_continue) = node_should_run(&pod_spec, node);
        let mut here = by_node.remove(&name).unwrap_or_default();
        if should_run {
            desired += 1;
        }
        // Failed daemon pods are replaced.
        for failed in here.iter().filter(|p| phase(p) == "Failed") {
            plan.delete.extend(failed.metadata.name.clone());
        }
        here.retain(|p| phase(p) != "Failed");
        if !should_continue {
            if !here.is_empty() {
                status.number_misscheduled += 1;
            }
            plan.delete
                .extend(here.iter().filter_map(|p| p.metadata.name.clone()));
            continue;
        }
        if !should_run && !here.is_empty() {
            status.number_misscheduled += 1;
        }
        if here.is_empty() {
            if should_run {
                plan.create.push(name);
            }
            continue;
        }
        if should_run {
            status.current_number_scheduled += 1;
        }
        // Oldest first; one pod per node (two during a surge).
        here.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        wanted.push((name, here));
    }
    // Pods on nodes that no longer exist go.
    for pods in by_node.values() {
        plan.delete
            .extend(pods.iter().filter_map(|p| p.metadata.name.clone()));
    }

    let max_surge = if rolling {
        scaled(
            rolling_update.and_then(|r| r.max_surge.as_ref()),
            desired,
            true,
            0,
        )
    } else {
        0
    };
    let max_unavailable = if rolling {
        let v = scaled(
            rolling_update.and_then(|r| r.max_unavailable.as_ref()),
            desired,
            false,
            1,
        );
        if v == 0 && max_surge == 0 {
            1
        } else {
            v
        }
    } else {
        0
    };
    let mut unavailable = plan.create.len() as i32;
    let mut old_available: Vec<(String, &Pod)> = Vec::new();
    let mut surging = 0;
    let (mut available, mut updated) = (0, 0);
    for (node, here) in &wanted {
        let new: Vec<&&Pod> = here.iter().filter(|p| hash_of(p) == Some(hash)).collect();
        let old: Vec<&&Pod> = here.iter().filter(|p| hash_of(p) != Some(hash)).collect();
        let current = new.first().or(old.first()).copied();
        if let Some(pod) = current {
            if is_ready(pod) {
                status.number_ready += 1;
            }
            if is_available(pod, min_ready, now) {
                available += 1;
            } else {
                unavailable += 1;
            }
        }
        if !new.is_empty() {
            updated += 1;
        }
        // Extra pods of one kind on a node go (the oldest stays).
        for extra in new.iter().skip(1) {
            plan.delete.extend(extra.metadata.name.clone());
        }
        if !rolling {
            for extra in old.iter().skip(if new.is_empty() { 1 } else { 0 }) {
                plan.delete.extend(extra.metadata.name.clone());
            }
            continue;
        }
        for extra in old.iter().skip(1) {
            plan.delete.extend(extra.metadata.name.clone());
        }
        let (Some(old_pod), new_pod) = (old.first(), new.first()) else {
            continue;
        };
        match new_pod {
            // A surged pod took over once available.
            Some(new_pod) if is_available(new_pod, min_ready, now) => {
                plan.delete.extend(old_pod.metadata.name.clone())
            }
            Some(_) => surging += 1,
            None if !is_available(old_pod, min_ready, now) => {
                // Already unavailable: replacing it costs nothing.
                plan.delete.extend(old_pod.metadata.name.clone())
            }
            None => old_available.push((node.clone(), old_pod)),
        }
    }
    if rolling {
        for (node, old_pod) in old_available {
            if surging < max_surge {
                surging += 1;
                plan.create.push(node);
            } else if unavailable < max_unavailable {
                unavailable += 1;
                plan.delete.extend(old_pod.metadata.name.clone());
            }
        }
    }
    plan.status.desired_number_scheduled = desired;
    plan.status.number_available = Some(available);
    plan.status.updated_number_scheduled = Some(updated);
    plan.status.number_unavailable = Some((desired - available).max(0));
    plan.status.observed_generation = ds.metadata.generation;
    plan
}

async fn publish(shared: &Shared, ds: &DaemonSet, type_: EventType, reason: &str, note: String) {
    publish_related(shared, ds, type_, reason, note, None).await;
}

/// Records an event about the owner; `related` names the object it concerns (events about
/// different objects are then kept apart instead of merged into one series).
async fn publish_related(
    shared: &Shared,
    ds: &DaemonSet,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    super::pod_control::publish_event(&shared.recorder, ds, type_, reason, note, related).await;
}

async fn sync(ds: &DaemonSet, shared: &Shared) -> Result<Action, kube::Error> {
    let key = key_of(&ds.metadata);
    if ds.metadata.deletion_timestamp.is_some() {
        shared.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    if !shared.expectations.satisfied(&key, &shared.pods) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let namespace = ds.namespace().unwrap_or_default();
    let client = shared.ctx.client.clone();
    let pod_api = Api::<Pod>::namespaced(client.clone(), &namespace);
    let revision_api = Api::<ControllerRevision>::namespaced(client.clone(), &namespace);
    let revisions = revision::list(&revision_api, ds, Some(&spec.selector)).await?;
    let (hash, _) = revision::ensure_current(&revision_api, ds, &spec.template, &revisions).await?;

    let owned = owned_by(&shared.pods, &namespace, &ds.uid().unwrap_or_default());
    let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let nodes = shared.nodes.state();
    let nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let now = Timestamp::now();
    let plan = plan(ds, &nodes, &pods, &hash, now);

    for name in &plan.delete {
        let Some(pod) = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        else {
            continue;
        };
        if phase(pod) == "Failed" {
            let node = pod_node(pod).unwrap_or_default();
            publish(shared, ds, EventType::Warning, "FailedDaemonPod", format!("Found failed daemon pod {namespace}/{name} on node {node}, will try to kill it")).await;
        }
        match pod_api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                shared.expectations.expect_delete(&key, pod);
                publish_related(
                    shared,
                    ds,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                    Some(pod.object_ref(&())),
                )
                .await;
            }
            Err(e) if is_conflict_or_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    for node in &plan.create {
        match pod_api
            .create(&PostParams::default(), &new_pod(ds, node, &hash))
            .await
        {
            Ok(pod) => {
                shared.expectations.expect_create(&key, &pod);
                publish_related(
                    shared,
                    ds,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.name_any()),
                    Some(pod.object_ref(&())),
                )
                .await;
            }
            Err(e) => {
                publish(
                    shared,
                    ds,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                )
                .await;
                return Err(e);
            }
        }
    }

    let mut live: Vec<String> = pods
        .iter()
        .filter_map(|p| hash_of(p).map(str::to_string))
        .collect();
    live.push(hash.clone());
    let revisions = revision::list(&revision_api, ds, Some(&spec.selector)).await?;
    revision::prune(
        &revision_api,
        &revisions,
        &live,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    let mut status = plan.status;
    status.collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    status.conditions = ds.status.as_ref().and_then(|s| s.conditions.clone());
    if ds.status.as_ref() != Some(&status) {
        let patch = pod_control::status_patch(ds.status.as_ref(), &status);
        match Api::<DaemonSet>::namespaced(client, &namespace)
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict_or_gone(&e) => {
                return Ok(Action::requeue(Duration::from_secs(1)))
            }
            Err(e) => return Err(e),
        }
    }
    // Availability after minReadySeconds comes without an event: look again then.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    Ok(
        if min_ready > 0 && status.number_available.unwrap_or(0) < status.desired_number_scheduled {
            Action::requeue(Duration::from_secs(min_ready as u64))
        } else {
            Action::await_change()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{
        Container, NodeSpec, PodCondition, PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn ds(max_unavailable: i32, max_surge: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("ns".into()),
                uid: Some("ds-uid".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: Some(IntOrString::Int(max_unavailable)),
                        max_surge: Some(IntOrString::Int(max_surge)),
                    }),
                }),
                ..DaemonSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Pod {
        let mut pod = new_pod(&ds(1, 0), node, hash);
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod.spec.as_mut().unwrap().node_name = Some(node.into());
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: ready.then(|| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                    ..PodCondition::default()
                }]
            }),
            ..PodStatus::default()
        });
        pod
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1000).unwrap()
    }

    #[test]
    fn every_eligible_node_gets_a_pod() {
        let a = node("a", &[], vec![]);
        let b = node("b", &[], vec![taint("dedicated", "NoSchedule")]);
        let c = node(
            "c",
            &[],
            vec![taint("node.kubernetes.io/unschedulable", "NoSchedule")],
        );
        let plan = plan(&ds(1, 0), &[&a, &b, &c], &[], "h1", now());
        assert_eq!(plan.create, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(plan.status.desired_number_scheduled, 2);
    }

    #[test]
    fn node_selectors_and_affinity_pick_nodes() {
        let mut spec = PodSpec {
            node_selector: Some(BTreeMap::from([("role".into(), "edge".into())])),
            ..PodSpec::default()
        };
        assert!(selects_node(&spec, &node("a", &[("role", "edge")], vec![])));
        assert!(!selects_node(&spec, &node("b", &[], vec![])));
        spec.node_selector = None;
        let pod = new_pod(&ds(1, 0), "a", "h");
        let pinned = pod.spec.unwrap();
        assert!(selects_node(&pinned, &node("a", &[], vec![])));
        assert!(!selects_node(&pinned, &node("b", &[], vec![])));
        assert_eq!(
            pod_node(&new_pod(&ds(1, 0), "a", "h")).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn daemon_pods_tolerate_node_conditions() {
        let pod = new_pod(&ds(1, 0), "a", "h");
        let tolerations = pod.spec.unwrap().tolerations.unwrap();
        assert_eq!(tolerations.len(), 6);
        let not_ready = taint("node.kubernetes.io/not-ready", "NoExecute");
        assert!(tolerations.iter().any(|t| tolerates(t, &not_ready)));
        assert_eq!(pod.metadata.labels.unwrap()[HASH_LABEL], "h");
        assert_eq!(daemon_tolerations(true).len(), 7);
    }

    #[test]
    fn no_execute_taints_evict_and_no_schedule_taints_only_block() {
        let spec = PodSpec::default();
        assert_eq!(
            node_should_run(&spec, &node("a", &[], vec![taint("x", "NoExecute")])),
            (false, false)
        );
        assert_eq!(
            node_should_run(&spec, &node("a", &[], vec![taint("x", "NoSchedule")])),
            (false, true)
        );
        let a = node("a", &[], vec![taint("x", "NoExecute")]);
        let running = pod("p", "a", "h1", true);
        let plan = plan(&ds(1, 0), &[&a], &[&running], "h1", now());
        assert_eq!(plan.delete, vec!["p".to_string()]);
        assert_eq!(plan.status.number_misscheduled, 1);
    }

    #[test]
    fn rolling_updates_respect_max_unavailable() {
        let nodes: Vec<Node> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, &[], vec![]))
            .collect();
        let nodes: Vec<&Node> = nodes.iter().collect();
        let pods: Vec<Pod> = ["a", "b", "c"]
            .iter()
            .map(|n| pod(&format!("p-{n}"), n, "old", true))
            .collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        let plan = plan(&ds(1, 0), &nodes, &pods, "new", now());
        assert_eq!(plan.delete.len(), 1);
        assert!(plan.create.is_empty());
        assert_eq!(plan.status.updated_number_scheduled, Some(0));
        assert_eq!(plan.status.number_available, Some(3));
    }

    #[test]
    fn surge_creates_before_deleting() {
        let a = node("a", &[], vec![]);
        let old = pod("old", "a", "old", true);
        let first = plan(&ds(0, 1), &[&a], &[&old], "new", now());
        assert_eq!(first.create, vec!["a".to_string()]);
        assert!(first.delete.is_empty());
        let new = pod("new", "a", "new", true);
        let second = plan(&ds(0, 1), &[&a], &[&old, &new], "new", now());
        assert_eq!(second.delete, vec!["old".to_string()]);
        assert!(second.create.is_empty());
    }

    #[test]
    fn percentages_scale() {
        let pct = IntOrString::String("25%".into());
        assert_eq!(scaled(Some(&pct), 10, false, 1), 2);
        assert_eq!(scaled(Some(&pct), 10, true, 1), 3);
        assert_eq!(scaled(None, 10, true, 1), 1);
    }
}
