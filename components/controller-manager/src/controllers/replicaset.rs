//! replicaset-controller: a ReplicaSet keeps `spec.replicas` active pods made from its
//! template. It claims the pods its selector matches (adopting orphans, releasing pods that
//! stopped matching), creates missing pods in slow-start batches, deletes surplus pods in
//! upstream's order, and reports replicas, fully labeled, ready and available pods and a
//! `ReplicaFailure` condition when it cannot create or delete. ReplicationControllers share
//! all of it through [`ReplicaOwner`].

use futures::StreamExt;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::events::{Events, Kind};
use super::expectations::Expectations;
use super::informer::{self, Change, Queue};
use super::ownership::{self, controller_of, controller_ref, error_message, Claim};
use super::pods;
use crate::context::Context;
use crate::options::Options;

/// Pods created or deleted in one sync at most (upstream's burstReplicas).
pub const BURST_REPLICAS: usize = 500;
/// Pod writes in flight at once, so that one controller's burst takes at most a third of the
/// API server's mutating in-flight limit (`--max-mutating-requests-inflight`, 200).
const WRITES_IN_FLIGHT: usize = 64;
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// What the replica logic needs of a ReplicaSet or a ReplicationController.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The controller's name in events.
    const CONTROLLER: &'static str;
    /// Its work queue's name in metrics.
    const QUEUE: &'static str;
    /// The pods it selects (None: none), or why its selector is invalid.
    fn selector(&self) -> Result<Option<Selector>, String>;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// Its status, in ReplicaSet form (a ReplicationController's has the same fields).
    fn replica_status(&self) -> ReplicaSetStatus;
    fn concurrency(options: &Options) -> u16;
}

impl ReplicaOwner for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset-controller";
    const QUEUE: &'static str = "replicaset";

    fn selector(&self) -> Result<Option<Selector>, String> {
        let Some(spec) = &self.spec else {
            return Ok(None);
        };
        Selector::try_from(spec.selector.clone())
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn replica_status(&self) -> ReplicaSetStatus {
        self.status.clone().unwrap_or_default()
    }

    fn concurrency(options: &Options) -> u16 {
        options.concurrency.replicaset
    }
}

/// A failure to create or delete pods, reported in the status and retried.
#[derive(Debug, Clone)]
pub struct ManageFailure {
    /// `FailedCreate` or `FailedDelete`, as the condition's reason.
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("claiming pods for {key}: {source}")]
    Claim { key: String, source: kube::Error },
    #[error("{key}: {}", failure.message)]
    Manage { key: String, failure: ManageFailure },
    #[error("updating the status of {key}: {source}")]
    Status { key: String, source: kube::Error },
}

/// Upstream's slow start: batches of 1, 2, 4, ... pods up to `count` in all, so a template
/// that cannot work (quota, admission) fails once instead of `count` times.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = 1;
    while remaining > 0 {
        let batch = size.min(remaining);
        batches.push(batch);
        remaining -= batch;
        size *= 2;
    }
    batches
}

/// Whether the pod's labels carry all of the template's (upstream's fullyLabeledReplicas).
fn fully_labeled(pod: &Pod, template: Option<&PodTemplateSpec>) -> bool {
    let wanted = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let labels = pod.metadata.labels.as_ref();
    wanted.is_none_or(|wanted| {
        wanted
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    })
}

/// The status the owner should report for its claimed active `pods`, after a sync that
/// failed with `failure` (or not).
pub fn calculate_status<R: ReplicaOwner>(
    owner: &R,
    pods: &[Arc<Pod>],
    failure: Option<&ManageFailure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let current = owner.replica_status();
    let template = owner.template();
    let count = |f: &dyn Fn(&Pod) -> bool| pods.iter().filter(|p| f(p)).count() as i32;
    let mut conditions: Vec<ReplicaSetCondition> = current.conditions.unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some(failure) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(failure.reason.into()),
            message: Some(failure.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    ReplicaSetStatus {
        replicas: pods.len() as i32,
        fully_labeled_replicas: Some(count(&|p| fully_labeled(p, template))),
        ready_replicas: Some(count(&|p| pods::is_ready(p))),
        available_replicas: Some(count(&|p| {
            pods::is_available(p, owner.min_ready_seconds(), now)
        })),
        observed_generation: owner.meta().generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: None,
    }
}

/// The status as a complete merge patch: zero counts and absent conditions written out, so
/// they replace what is there.
fn status_patch(status: &ReplicaSetStatus) -> Value {
    json!({"status": {
        "replicas": status.replicas,
        "fullyLabeledReplicas": status.fully_labeled_replicas.unwrap_or(0),
        "readyReplicas": status.ready_replicas.unwrap_or(0),
        "availableReplicas": status.available_replicas.unwrap_or(0),
        "observedGeneration": status.observed_generation,
        "conditions": status.conditions,
    }})
}

/// Whether two statuses say the same (absent counts are zero).
fn same_status(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.replicas == b.replicas
        && n(a.fully_labeled_replicas) == n(b.fully_labeled_replicas)
        && n(a.ready_replicas) == n(b.ready_replicas)
        && n(a.available_replicas) == n(b.available_replicas)
        && a.observed_generation == b.observed_generation
        && a.conditions.as_deref().unwrap_or_default()
            == b.conditions.as_deref().unwrap_or_default()
}

/// The state one replica controller's syncs share.
pub struct Replicas<R: ReplicaOwner> {
    ctx: Arc<Context>,
    owners: Store<R>,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    events: Events,
}

fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// The owner in `owners` that a controller reference in `namespace` names, if it is one of
/// ours and still the same object.
fn resolve<R: ReplicaOwner>(
    owners: &Store<R>,
    namespace: &str,
    reference: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Option<Arc<R>> {
    if reference.kind != R::kind(&()) {
        return None;
    }
    owners
        .get(&ObjectRef::new(&reference.name).within(namespace))
        .filter(|o| o.meta().uid.as_deref() == Some(reference.uid.as_str()))
}

/// Owners in the pod's namespace whose selector matches it (for orphans).
fn selecting<R: ReplicaOwner>(owners: &Store<R>, pod: &Pod) -> Vec<Arc<R>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    owners
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter(|o| {
            o.selector()
                .ok()
                .flatten()
                .is_some_and(|s| ownership::matches(Some(&s), &labels))
        })
        .collect()
}

/// Upstream's pod event handlers: observe expectations and queue the owners concerned.
fn on_pod<R: ReplicaOwner>(
    change: Change<Pod>,
    owners: &Store<R>,
    expectations: &Expectations,
    queue: &Queue<R>,
) {
    let gone = |pod: &Pod| {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(owner) =
            controller_of(&pod.metadata).and_then(|r| resolve(owners, namespace, r))
        {
            expectations.deletion_observed(&key_of(owner.as_ref()), &key_of(pod));
            queue.add_obj(&owner);
        }
    };
    match change {
        Change::Deleted(pod) => gone(&pod),
        Change::Applied { old: None, new } => {
            if new.metadata.deletion_timestamp.is_some() {
                gone(&new);
                return;
            }
            let namespace = new.metadata.namespace.as_deref().unwrap_or_default();
            match controller_of(&new.metadata) {
                Some(reference) => {
                    if let Some(owner) = resolve(owners, namespace, reference) {
                        expectations.creation_observed(&key_of(owner.as_ref()));
                        queue.add_obj(&owner);
                    }
                }
                None => selecting(owners, &new)
                    .iter()
                    .for_each(|o| queue.add_obj(o)),
            }
        }
        Change::Applied {
            old: Some(old),
            new,
        } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let labels_changed = old.metadata.labels != new.metadata.labels;
            if new.metadata.deletion_timestamp.is_some() {
                gone(&new);
                if labels_changed {
                    gone(&old);
                }
                return;
            }
            let namespace = new.metadata.namespace.as_deref().unwrap_or_default();
            let (old_ref, new_ref) = (controller_of(&old.metadata), controller_of(&new.metadata));
            let ref_changed = old_ref != new_ref;
            if ref_changed {
                if let Some(owner) = old_ref.and_then(|r| resolve(owners, namespace, r)) {
                    queue.add_obj(&owner);
                }
            }
            match new_ref {
                Some(reference) => {
                    if let Some(owner) = resolve(owners, namespace, reference) {
                        queue.add_obj(&owner);
                    }
                }
                None if labels_changed || ref_changed => selecting(owners, &new)
                    .iter()
                    .for_each(|o| queue.add_obj(o)),
                None => {}
            }
        }
    }
}

/// Runs the replica controller for `R` until the process ends.
pub async fn run_for<R: ReplicaOwner>(ctx: Arc<Context>) {
    let (queue, keys) = Queue::<R>::new();
    let expectations = Arc::new(Expectations::default());
    let owners = {
        let queue = queue.clone();
        let expectations = expectations.clone();
        informer::watch(
            Api::<R>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |change| match change {
                Change::Applied { new, .. } => queue.add_obj(&new),
                Change::Deleted(owner) => expectations.forget(&key_of(owner.as_ref())),
            },
        )
    };
    let pods = {
        let owners = owners.clone();
        let expectations = expectations.clone();
        informer::watch(
            Api::<Pod>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |change| on_pod(change, &owners, &expectations, &queue),
        )
    };
    let ready = vec![informer::ready(&owners), informer::ready(&pods)];
    let concurrency = R::concurrency(&ctx.options);
    let shared = Arc::new(Replicas {
        events: Events::new(ctx.client.clone(), R::CONTROLLER, &ctx.identity),
        ctx,
        owners: owners.clone(),
        pods,
        expectations,
    });
    informer::run(owners, ready, keys, concurrency, shared, sync::<R>).await;
}

pub async fn run(ctx: Arc<Context>) {
    run_for::<ReplicaSet>(ctx).await;
}

async fn sync<R: ReplicaOwner>(owner: Arc<R>, shared: Arc<Replicas<R>>) -> Result<Action, Error> {
    let timer = shared.ctx.metrics.sync(R::QUEUE);
    let result = sync_owner(owner.as_ref(), shared.as_ref()).await;
    timer.done(result.is_ok());
    result
}

async fn sync_owner<R: ReplicaOwner>(owner: &R, shared: &Replicas<R>) -> Result<Action, Error> {
    let key = key_of(owner);
    let namespace = owner.namespace().unwrap_or_default();
    // Read before the pods: expectations observed after the listing would let a sync act on
    // pods the listing does not show yet.
    let needs_sync = shared.expectations.satisfied(&key);
    let selector = match owner.selector() {
        Ok(selector) => selector,
        Err(error) => {
            tracing::warn!(owner = %key, %error, "invalid selector; not syncing");
            return Ok(Action::await_change());
        }
    };
    let active: Vec<Arc<Pod>> = shared
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|p| pods::is_active(p))
        .collect();
    let pods = claim_pods(owner, shared, selector.as_ref(), active)
        .await
        .map_err(|source| Error::Claim {
            key: key.clone(),
            source,
        })?;
    let failure = if needs_sync && owner.meta().deletion_timestamp.is_none() {
        manage(owner, &key, &pods, shared).await.err()
    } else {
        None
    };
    let now = Timestamp::now();
    let status = calculate_status(owner, &pods, failure.as_ref(), now);
    let current = owner.replica_status();
    if !same_status(&current, &status) {
        Api::<R>::namespaced(shared.ctx.client.clone(), &namespace)
            .patch_status(
                &owner.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status_patch(&status)),
            )
            .await
            .map_err(|source| Error::Status {
                key: key.clone(),
                source,
            })?;
    }
    if let Some(failure) = failure {
        return Err(Error::Manage { key, failure });
    }
    let min_ready = owner.min_ready_seconds();
    let ready = status.ready_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if min_ready > 0 && ready == owner.replicas() && available != ready {
        // Pods become available with time alone, which no watch event announces.
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    if !needs_sync {
        // Lost events would leave expectations unmet; look again once they expire.
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    Ok(Action::await_change())
}

/// Upstream's ClaimPods: the owner's active pods, orphans adopted and strays released.
async fn claim_pods<R: ReplicaOwner>(
    owner: &R,
    shared: &Replicas<R>,
    selector: Option<&Selector>,
    active: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>, kube::Error> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let namespace = owner.namespace().unwrap_or_default();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let api = Api::<Pod>::namespaced(shared.ctx.client.clone(), &namespace);
    let reference = controller_ref(owner);
    let mut can_adopt: Option<bool> = None;
    let mut claimed = Vec::new();
    for pod in active {
        match ownership::classify(&uid, deleting, selector, &pod.metadata) {
            Claim::Owned => claimed.push(pod),
            Claim::Ignore => {}
            Claim::Release => ownership::release(&api, &uid, pod.as_ref()).await?,
            Claim::Adopt => {
                if can_adopt.is_none() {
                    // The cache may be stale: adopt only for an owner that still exists and
                    // is not being deleted (upstream's RecheckDeletionTimestamp).
                    let fresh = Api::<R>::namespaced(shared.ctx.client.clone(), &namespace)
                        .get_opt(&owner.name_any())
                        .await?;
                    can_adopt = Some(fresh.is_some_and(|f| {
                        f.meta().uid.as_deref() == Some(uid.as_str())
                            && f.meta().deletion_timestamp.is_none()
                    }));
                }
                if can_adopt == Some(true) {
                    ownership::adopt(&api, &reference, pod.as_ref()).await?;
                    claimed.push(pod);
                }
            }
        }
    }
    Ok(claimed)
}

fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403
        && status.message.contains("being terminated"))
}

/// Creates or deletes pods so that `spec.replicas` are active.
async fn manage<R: ReplicaOwner>(
    owner: &R,
    key: &str,
    pods: &[Arc<Pod>],
    shared: &Replicas<R>,
) -> Result<(), ManageFailure> {
    let wanted = owner.replicas().max(0) as usize;
    let namespace = owner.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(shared.ctx.client.clone(), &namespace);
    if pods.len() < wanted {
        let Some(template) = owner.template() else {
            return Ok(());
        };
        let count = (wanted - pods.len()).min(BURST_REPLICAS);
        let pod = pods::from_template(template, &controller_ref(owner), &namespace);
        let copies =
            pods::Copies::new(shared.ctx.client.clone(), &pod).map_err(|error| ManageFailure {
                reason: "FailedCreate",
                message: error.to_string(),
            })?;
        shared.expectations.expect_creations(key, count);
        let mut created = 0;
        let mut failure = None;
        let params = PostParams::default();
        for batch in slow_start_batches(count) {
            // Collected first: a closure inside the stream's type trips the Send check.
            let creates: Vec<_> = (0..batch).map(|_| copies.create(&params)).collect();
            let results: Vec<_> = futures::stream::iter(creates)
                .buffer_unordered(WRITES_IN_FLIGHT)
                .collect()
                .await;
            for result in results {
                match result {
                    Ok(name) => {
                        created += 1;
                        let note = format!("Created pod: {name}");
                        shared
                            .events
                            .record(owner, Kind::Normal, "SuccessfulCreate", note);
                    }
                    Err(error) if namespace_terminating(&error) => {}
                    Err(error) => {
                        let message = error_message(&error);
                        let note = format!("Error creating: {message}");
                        shared
                            .events
                            .record(owner, Kind::Warning, "FailedCreate", note);
                        failure = Some(ManageFailure {
                            reason: "FailedCreate",
                            message,
                        });
                    }
                }
            }
            if failure.is_some() {
                break;
            }
        }
        // Pods never made will never be observed.
        for _ in created..count {
            shared.expectations.creation_observed(key);
        }
        tracing::debug!(owner = %key, created, wanted = count, "created pods");
        return failure.map_or(Ok(()), Err);
    }
    if pods.len() > wanted {
        let count = (pods.len() - wanted).min(BURST_REPLICAS);
        let related = related_pods(owner, shared);
        let candidates: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let related: Vec<&Pod> = related.iter().map(|p| p.as_ref()).collect();
        let victims = pods::to_delete(&candidates, &related, count, Timestamp::now());
        shared
            .expectations
            .expect_deletions(key, victims.iter().map(|p| key_of(*p)));
        let params = DeleteParams::default();
        let names: Vec<String> = victims.iter().map(|p| p.name_any()).collect();
        let deletes: Vec<_> = names.iter().map(|n| api.delete(n, &params)).collect();
        let results: Vec<_> = futures::stream::iter(deletes)
            .buffered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        let mut failure = None;
        for (pod, result) in victims.iter().zip(results) {
            let name = pod.name_any();
            match result {
                Ok(_) => shared.events.record(
                    owner,
                    Kind::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                ),
                Err(error) => {
                    // The watch will not show a deletion that did not happen.
                    shared.expectations.deletion_observed(key, &key_of(*pod));
                    if matches!(&error, kube::Error::Api(s) if s.code == 404) {
                        continue;
                    }
                    let message = error_message(&error);
                    let note = format!("Error deleting: {message}");
                    shared
                        .events
                        .record(owner, Kind::Warning, "FailedDelete", note);
                    failure = Some(ManageFailure {
                        reason: "FailedDelete",
                        message,
                    });
                }
            }
        }
        return failure.map_or(Ok(()), Err);
    }
    Ok(())
}

/// Pods of the owner's siblings (owned by the same controller, as a Deployment's ReplicaSets),
/// whose nodes count when choosing which pods to delete.
fn related_pods<R: ReplicaOwner>(owner: &R, shared: &Replicas<R>) -> Vec<Arc<Pod>> {
    let namespace = owner.namespace().unwrap_or_default();
    let own_uid = owner.meta().uid.clone().unwrap_or_default();
    let mut uids: HashSet<String> = HashSet::from([own_uid]);
    if let Some(parent) = controller_of(owner.meta()) {
        uids.extend(
            shared
                .owners
                .state()
                .iter()
                .filter(|o| o.meta().namespace.as_deref() == Some(namespace.as_str()))
                .filter(|o| controller_of(o.meta()).is_some_and(|r| r.uid == parent.uid))
                .filter_map(|o| o.meta().uid.clone()),
        );
    }
    shared
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|p| controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pods::tests::pod;

    fn replica_set(replicas: i32, min_ready: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "rs", "namespace": "ns", "uid": "u", "generation": 4},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a", "tier": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .unwrap()
    }

    fn labeled(mut p: Pod, labels: &[(&str, &str)]) -> Arc<Pod> {
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Arc::new(p)
    }

    #[test]
    fn slow_start_doubles_batches() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(500).iter().sum::<usize>(), 500);
    }

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let rs = replica_set(3, 30);
        let full = &[("app", "a"), ("tier", "web")];
        let pods = vec![
            labeled(pod("a", "n1", "Running", Some(100), 200), full),
            labeled(pod("b", "n1", "Running", Some(5), 200), full),
            labeled(pod("c", "n1", "Pending", None, 200), &[("app", "a")]),
        ];
        let status = calculate_status(&rs, &pods, None, Timestamp::now());
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        assert!(status.conditions.is_none());
    }

    #[test]
    fn failures_set_and_clear_the_replica_failure_condition() {
        let mut rs = replica_set(3, 0);
        let failure = ManageFailure {
            reason: "FailedCreate",
            message: "exceeded quota".into(),
        };
        let status = calculate_status(&rs, &[], Some(&failure), Timestamp::now());
        let conditions = status.conditions.clone().unwrap();
        assert_eq!(conditions[0].type_, "ReplicaFailure");
        assert_eq!(conditions[0].reason.as_deref(), Some("FailedCreate"));
        rs.status = Some(status.clone());
        // A second failure keeps the first condition (and its time).
        let again = calculate_status(&rs, &[], Some(&failure), Timestamp::now());
        assert!(same_status(&status, &again));
        let cleared = calculate_status(&rs, &[], None, Timestamp::now());
        assert!(cleared.conditions.is_none());
        assert!(!same_status(&status, &cleared));
    }

    #[test]
    fn absent_counts_equal_zero() {
        let a = ReplicaSetStatus {
            replicas: 1,
            ready_replicas: Some(0),
            ..ReplicaSetStatus::default()
        };
        let b = ReplicaSetStatus {
            replicas: 1,
            ..ReplicaSetStatus::default()
        };
        assert!(same_status(&a, &b));
        assert_eq!(status_patch(&b)["status"]["readyReplicas"], 0);
        assert!(status_patch(&b)["status"]["conditions"].is_null());
    }
}
