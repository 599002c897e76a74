//! statefulset-controller: pods with stable names `<set>-<ordinal>` and stable storage (a
//! PersistentVolumeClaim per volumeClaimTemplate and ordinal, kept when pods go). OrderedReady
//! creates in ordinal order, each pod Running and Ready before the next, and removes in
//! reverse; Parallel does both at once. RollingUpdate replaces pods from the highest ordinal
//! down to the partition; the template of each revision is kept in a ControllerRevision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod,
    PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::controllers::pod_control::{
    self, controller_ref, is_available, is_conflict_or_gone, is_ready, key_of, owned_by, phase,
    Expectations,
};
use crate::controllers::revision::{self, HASH_LABEL};

const QUEUE: &str = "statefulset";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("statefulset {statefulset}: {source}")]
    Api {
        statefulset: String,
        source: kube::Error,
    },
}

struct Shared {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    expectations: Expectations,
    recorder: Recorder,
}

pub async fn run(ctx: Arc<Context>) {
    let (pods, pod_events) = pod_control::reflect(Api::<Pod>::all(ctx.client.clone()));
    let shared = Arc::new(Shared {
        recorder: ctx.recorder("statefulset-controller"),
        pods,
        expectations: Expectations::default(),
        ctx: ctx.clone(),
    });
    Controller::new(
        Api::<StatefulSet>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(pod_events)
    .with_config(controller::Config::default().concurrency(ctx.options.concurrency.statefulset))
    .run(reconcile, error_policy, shared)
    .for_each(|_| async {})
    .await;
}

fn error_policy(_: Arc<StatefulSet>, error: &Error, _: Arc<Shared>) -> Action {
    tracing::warn!(%error, "statefulset sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(set: Arc<StatefulSet>, shared: Arc<Shared>) -> Result<Action, Error> {
    let timer = shared.ctx.metrics.sync(QUEUE);
    let result = sync(&set, &shared).await.map_err(|source| Error::Api {
        statefulset: key_of(&set.metadata),
        source,
    });
    timer.done(result.is_ok());
    result
}

/// The ordinal in a pod's name `<set>-<ordinal>`, if it is one of the set's.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// The claim name for a template and an ordinal: `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The pod for `ordinal` from `template` at revision `hash`.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, hash: &str) -> Pod {
    let set_name = set.name_any();
    let name = format!("{set_name}-{ordinal}");
    let mut pod = pod_control::pod_from_template(template, controller_ref(set));
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.namespace();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), hash.into());
    let spec = set.spec.as_ref();
    if let Some(pod_spec) = pod.spec.as_mut() {
        pod_spec.hostname = Some(name);
        pod_spec.subdomain = spec.and_then(|s| s.service_name.clone());
        for claim in spec
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
        {
            let template_name = claim.metadata.name.clone().unwrap_or_default();
            let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
            volumes.retain(|v| v.name != template_name);
            volumes.push(Volume {
                name: template_name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&template_name, &set.name_any(), ordinal),
                    read_only: None,
                }),
                ..Volume::default()
            });
        }
    }
    pod
}

/// The claims the pod for `ordinal` needs.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(
                        template.metadata.name.as_deref().unwrap_or_default(),
                        &set.name_any(),
                        ordinal,
                    )),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// One step of a sync.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Create the pod for this ordinal, at the current (false) or update (true) revision.
    Create(i32, bool),
    Delete(String),
}

/// What to do now, given the set's pods, the revisions and the partition.
pub fn plan(set: &StatefulSet, pods: &[&Pod], current: &str, update: &str) -> Vec<Step> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let name = set.name_any();
    let replicas = spec.replicas.unwrap_or(1);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let mut steps = Vec::new();
    let by_ordinal: BTreeMap<i32, &Pod> = pods
        .iter()
        .filter_map(|p| Some((ordinal(&name, p.metadata.name.as_deref()?)?, *p)))
        .collect();
    // Pods up to the partition stay at the current revision.
    let revision_for =
        |ordinal: i32| !(rolling && ordinal - start < partition && current != update);
    let mut blocked = false;
    for ordinal in start..start + replicas {
        match by_ordinal.get(&ordinal) {
            None => {
                steps.push(Step::Create(ordinal, revision_for(ordinal)));
                if !parallel {
                    return steps;
                }
            }
            Some(pod) if phase(pod) == "Failed" && pod.metadata.deletion_timestamp.is_none() => {
                steps.push(Step::Delete(pod.name_any()));
                if !parallel {
                    return steps;
                }
            }
            Some(pod) if !running_and_ready(pod) => {
                blocked = true;
                if !parallel {
                    return steps;
                }
            }
            Some(_) => {}
        }
    }
    // Scale down: highest ordinal first, one at a time unless Parallel.
    let condemned: Vec<&&Pod> = by_ordinal
        .iter()
        .rev()
        .filter(|(o, _)| **o < start || **o >= start + replicas)
        .map(|(_, p)| p)
        .collect();
    for pod in &condemned {
        if pod.metadata.deletion_timestamp.is_some() {
            if !parallel {
                return steps;
            }
            continue;
        }
        steps.push(Step::Delete(pod.name_any()));
        if !parallel {
            return steps;
        }
    }
    if !steps.is_empty() || blocked || !condemned.is_empty() || !rolling {
        return steps;
    }
    // Rolling update: the highest pod not at the update revision, above the partition, once
    // every pod is Running and Ready.
    for ordinal in (start + partition.max(0)..start + replicas).rev() {
        if let Some(pod) = by_ordinal.get(&ordinal) {
            if revision_of(pod) != Some(update) {
                if pod.metadata.deletion_timestamp.is_none() {
                    steps.push(Step::Delete(pod.name_any()));
                }
                return steps;
            }
        }
    }
    steps
}

/// The status the pods show.
pub fn status(
    set: &StatefulSet,
    pods: &[&Pod],
    current: &str,
    update: &str,
    now: Timestamp,
) -> StatefulSetStatus {
    let spec = set.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let live: Vec<&&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let replicas = live.len() as i32;
    let updated = count(&|p| revision_of(p) == Some(update));
    let ready = count(&|p| running_and_ready(p));
    let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
    // The update is done once every wanted pod runs it: it becomes the current revision.
    let done = updated == wanted && replicas == wanted && ready == wanted;
    let current = if done { update } else { current };
    StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(count(&|p| {
            running_and_ready(p) && is_available(p, min_ready, now)
        })),
        current_replicas: Some(count(&|p| revision_of(p) == Some(current))),
        updated_replicas: Some(updated),
        current_revision: Some(current.to_string()),
        update_revision: Some(update.to_string()),
        observed_generation: set.metadata.generation,
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// The template a revision holds.
fn revision_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    if let Some(map) = template.as_object_mut() {
        map.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// Records an event about the set; `related` names the pod or claim it concerns (events
/// about different objects are then kept apart instead of merged into one series).
async fn publish(
    shared: &Shared,
    set: &StatefulSet,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    super::pod_control::publish_event(&shared.recorder, set, type_, reason, note, related).await;
}

async fn sync(set: &StatefulSet, shared: &Shared) -> Result<Action, kube::Error> {
    let key = key_of(&set.metadata);
    if set.metadata.deletion_timestamp.is_some() {
        shared.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    if !shared.expectations.satisfied(&key, &shared.pods) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let name = set.name_any();
    let namespace = set.namespace().unwrap_or_default();
    let client = shared.ctx.client.clone();
    let pod_api = Api::<Pod>::namespaced(client.clone(), &namespace);
    let claim_api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace);
    let revision_api = Api::<ControllerRevision>::namespaced(client.clone(), &namespace);
    let revisions = revision::list(&revision_api, set, Some(&spec.selector)).await?;
    let (update, _) =
        revision::ensure_current(&revision_api, set, &spec.template, &revisions).await?;
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .filter(|c| {
            revisions
                .iter()
                .any(|r| r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(c))
        })
        .unwrap_or_else(|| update.clone());
    let current_template = revisions
        .iter()
        .find(|r| r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(&current))
        .and_then(revision_template)
        .unwrap_or_else(|| spec.template.clone());

    let owned = owned_by(&shared.pods, &namespace, &set.uid().unwrap_or_default());
    let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    for step in plan(set, &pods, &current, &update) {
        match step {
            Step::Create(ordinal, at_update) => {
                for claim in claims(set, ordinal) {
                    let claim_name = claim.name_any();
                    match claim_api.create(&PostParams::default(), &claim).await {
                        Ok(_) => publish(shared, set, EventType::Normal, "SuccessfulCreate", format!("create Claim {claim_name} Pod {name}-{ordinal} in StatefulSet {name} success"), Some(claim.object_ref(&()))).await,
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(e) => {
                            publish(shared, set, EventType::Warning, "FailedCreate", format!("create Claim {claim_name} for Pod {name}-{ordinal} in StatefulSet {name} failed error: {e}"), Some(claim.object_ref(&()))).await;
                            return Err(e);
                        }
                    }
                }
                let (template, hash) = if at_update {
                    (&spec.template, &update)
                } else {
                    (&current_template, &current)
                };
                let pod = new_pod(set, template, ordinal, hash);
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(created) => {
                        shared.expectations.expect_create(&key, &created);
                        publish(
                            shared,
                            set,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!(
                                "create Pod {} in StatefulSet {name} successful",
                                created.name_any()
                            ),
                            Some(created.object_ref(&())),
                        )
                        .await;
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => {
                        publish(shared, set, EventType::Warning, "FailedCreate", format!("create Pod {name}-{ordinal} in StatefulSet {name} failed error: {e}"), Some(pod.object_ref(&()))).await;
                        return Err(e);
                    }
                }
            }
            Step::Delete(pod_name) => {
                let Some(pod) = pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(&pod_name))
                else {
                    continue;
                };
                match pod_api.delete(&pod_name, &DeleteParams::background()).await {
                    Ok(_) => {
                        shared.expectations.expect_delete(&key, pod);
                        publish(
                            shared,
                            set,
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                            Some(pod.object_ref(&())),
                        )
                        .await;
                    }
                    Err(e) if is_conflict_or_gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    let status = status(set, &pods, &current, &update, Timestamp::now());
    let live = vec![current.clone(), update.clone()];
    let revisions = revision::list(&revision_api, set, Some(&spec.selector)).await?;
    revision::prune(
        &revision_api,
        &revisions,
        &live,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;
    if set.status.as_ref() != Some(&status) {
        let patch = pod_control::status_patch(set.status.as_ref(), &status);
        match Api::<StatefulSet>::namespaced(client, &namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict_or_gone(&e) => {
                return Ok(Action::requeue(Duration::from_secs(1)))
            }
            Err(e) => return Err(e),
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    Ok(
        if min_ready > 0 && status.available_replicas < status.ready_replicas {
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
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{
        Container, PersistentVolumeClaimSpec, PodCondition, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn set(replicas: i32, partition: i32, parallel: bool) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("set-uid".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("web".into()),
                pod_management_policy: Some(
                    if parallel { "Parallel" } else { "OrderedReady" }.into(),
                ),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    ..LabelSelector::default()
                },
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
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateStatefulSetStrategy {
                        partition: Some(partition),
                        max_unavailable: None,
                    }),
                }),
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("data".into()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec::default()),
                    status: None,
                }]),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod(ordinal: i32, hash: &str, ready: bool) -> Pod {
        let s = set(3, 0, false);
        let mut pod = new_pod(&s, &s.spec.as_ref().unwrap().template, ordinal, hash);
        pod.metadata.uid = Some(format!("uid-{ordinal}"));
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

    #[test]
    fn pods_have_stable_identity_and_storage() {
        let s = set(3, 0, false);
        let pod = new_pod(&s, &s.spec.as_ref().unwrap().template, 2, "h");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(pod.labels()[POD_NAME_LABEL], "web-2");
        assert_eq!(pod.labels()[POD_INDEX_LABEL], "2");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let volume = &spec.volumes.unwrap()[0];
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        let claim = &claims(&s, 2)[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data-web-2"));
        assert_eq!(claim.labels()["app"], "web");
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = set(3, 0, false);
        assert_eq!(plan(&s, &[], "h", "h"), vec![Step::Create(0, true)]);
        let starting = pod(0, "h", false);
        assert!(plan(&s, &[&starting], "h", "h").is_empty());
        let ready = pod(0, "h", true);
        assert_eq!(plan(&s, &[&ready], "h", "h"), vec![Step::Create(1, true)]);
    }

    #[test]
    fn parallel_creates_all() {
        let s = set(3, 0, true);
        assert_eq!(plan(&s, &[], "h", "h").len(), 3);
    }

    #[test]
    fn scale_down_goes_in_reverse() {
        let s = set(1, 0, false);
        let pods: Vec<Pod> = (0..3).map(|o| pod(o, "h", true)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(
            plan(&s, &refs, "h", "h"),
            vec![Step::Delete("web-2".into())]
        );
    }

    #[test]
    fn rolling_update_stops_at_the_partition() {
        let s = set(3, 1, false);
        let pods: Vec<Pod> = (0..3).map(|o| pod(o, "old", true)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(
            plan(&s, &refs, "old", "new"),
            vec![Step::Delete("web-2".into())]
        );
        let updated = [
            pod(0, "old", true),
            pod(1, "new", true),
            pod(2, "new", true),
        ];
        let refs: Vec<&Pod> = updated.iter().collect();
        assert!(plan(&s, &refs, "old", "new").is_empty());
        let status = status(&s, &refs, "old", "new", Timestamp::now());
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.current_replicas, Some(1));
        assert_eq!(status.current_revision.as_deref(), Some("old"));
        // Below the partition, a recreated pod keeps the current revision.
        let missing = [pod(1, "new", true), pod(2, "new", true)];
        let refs: Vec<&Pod> = missing.iter().collect();
        assert_eq!(plan(&s, &refs, "old", "new"), vec![Step::Create(0, false)]);
    }

    #[test]
    fn ordinals_come_from_names() {
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-a"), None);
    }
}
