//! deployment-controller: a Deployment rolls its pod template out through ReplicaSets named
//! `<deployment>-<pod-template-hash>`: RollingUpdate within maxSurge/maxUnavailable, or
//! Recreate; proportional scaling mid-rollout; paused deployments only scale; old ReplicaSets
//! beyond revisionHistoryLimit are deleted; a template equal to an old ReplicaSet's (as
//! `kubectl rollout undo` writes) brings that one back under a new revision. Status carries
//! the replica counts and the Progressing and Available conditions with the progress deadline.

mod util;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::events::{Events, Kind};
use super::informer::{self, Change, Queue};
use super::ownership::{self, controller_of, controller_ref, error_message, Claim};
use crate::context::Context;
use util::*;

const QUEUE: &str = "deployment";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{key}: {action}: {source}")]
    Api {
        key: String,
        action: &'static str,
        source: kube::Error,
    },
    #[error("{key}: hash collision on ReplicaSet {name}; collisionCount raised")]
    Collision { key: String, name: String },
}

struct Shared {
    ctx: Arc<Context>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    events: Events,
}

fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

fn selector_of(d: &Deployment) -> Option<Selector> {
    d.spec
        .as_ref()
        .and_then(|s| Selector::try_from(s.selector.clone()).ok())
}

/// The deployment a controller reference in `namespace` names, if still that object.
fn resolve(
    deployments: &Store<Deployment>,
    namespace: &str,
    reference: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Option<Arc<Deployment>> {
    if reference.kind != "Deployment" {
        return None;
    }
    deployments
        .get(&ObjectRef::new(&reference.name).within(namespace))
        .filter(|d| d.metadata.uid.as_deref() == Some(reference.uid.as_str()))
}

fn on_replica_set(
    change: Change<ReplicaSet>,
    deployments: &Store<Deployment>,
    queue: &Queue<Deployment>,
) {
    let enqueue_owner = |rs: &ReplicaSet| {
        let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(d) =
            controller_of(&rs.metadata).and_then(|r| resolve(deployments, namespace, r))
        {
            queue.add_obj(&d);
        }
    };
    let enqueue_selecting = |rs: &ReplicaSet| {
        let namespace = rs.metadata.namespace.as_deref();
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        for d in deployments.state() {
            if d.metadata.namespace.as_deref() == namespace
                && ownership::matches(selector_of(&d).as_ref(), &labels)
            {
                queue.add_obj(&d);
            }
        }
    };
    match change {
        Change::Deleted(rs) => enqueue_owner(&rs),
        Change::Applied { old, new } => {
            if let Some(old) = &old {
                if controller_of(&old.metadata) != controller_of(&new.metadata) {
                    enqueue_owner(old);
                }
            }
            if controller_of(&new.metadata).is_some() {
                enqueue_owner(&new);
            } else if old.as_ref().is_none_or(|o| {
                o.metadata.labels != new.metadata.labels || controller_of(&o.metadata).is_some()
            }) {
                enqueue_selecting(&new);
            }
        }
    }
}

/// A deleted pod may be the last old one a Recreate rollout waits for.
fn on_pod(
    change: Change<Pod>,
    replica_sets: &Store<ReplicaSet>,
    deployments: &Store<Deployment>,
    queue: &Queue<Deployment>,
) {
    let Change::Deleted(pod) = change else {
        return;
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let Some(reference) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
        return;
    };
    let Some(rs) = replica_sets.get(&ObjectRef::new(&reference.name).within(namespace)) else {
        return;
    };
    if let Some(d) = controller_of(&rs.metadata).and_then(|r| resolve(deployments, namespace, r)) {
        if is_recreate(&d) {
            queue.add_obj(&d);
        }
    }
}

pub async fn run(ctx: Arc<Context>) {
    let (queue, keys) = Queue::<Deployment>::new();
    let deployments = {
        let queue = queue.clone();
        informer::watch(
            Api::<Deployment>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |change| {
                if let Change::Applied { new, .. } = change {
                    queue.add_obj(&new);
                }
            },
        )
    };
    let replica_sets = {
        let deployments = deployments.clone();
        let queue = queue.clone();
        informer::watch(
            Api::<ReplicaSet>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |change| on_replica_set(change, &deployments, &queue),
        )
    };
    let pods = {
        let deployments = deployments.clone();
        let replica_sets = replica_sets.clone();
        informer::watch(
            Api::<Pod>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |change| on_pod(change, &replica_sets, &deployments, &queue),
        )
    };
    let ready = vec![
        informer::ready(&deployments),
        informer::ready(&replica_sets),
        informer::ready(&pods),
    ];
    let concurrency = ctx.options.concurrency.deployment;
    let shared = Arc::new(Shared {
        events: Events::new(ctx.client.clone(), "deployment-controller", &ctx.identity),
        ctx,
        replica_sets,
        pods,
    });
    informer::run(deployments, ready, keys, concurrency, shared, sync).await;
}

async fn sync(d: Arc<Deployment>, shared: Arc<Shared>) -> Result<Action, Error> {
    let timer = shared.ctx.metrics.sync(QUEUE);
    let mut run = Run::new(d.as_ref().clone(), shared.as_ref());
    let result = run.sync().await;
    timer.done(result.is_ok());
    result
}

/// One sync of one deployment: the working copy, updated as writes succeed.
struct Run<'a> {
    d: Deployment,
    key: String,
    shared: &'a Shared,
    deployments: Api<Deployment>,
    replica_sets: Api<ReplicaSet>,
    requeue: Option<Duration>,
}

fn api_error<'k>(key: &'k str, action: &'static str) -> impl FnOnce(kube::Error) -> Error + 'k {
    move |source| Error::Api {
        key: key.to_string(),
        action,
        source,
    }
}

impl<'a> Run<'a> {
    fn new(d: Deployment, shared: &'a Shared) -> Run<'a> {
        let namespace = d.namespace().unwrap_or_default();
        Run {
            key: key_of(&d),
            deployments: Api::namespaced(shared.ctx.client.clone(), &namespace),
            replica_sets: Api::namespaced(shared.ctx.client.clone(), &namespace),
            d,
            shared,
            requeue: None,
        }
    }

    fn event(&self, kind: Kind, reason: &str, note: String) {
        self.shared.events.record(&self.d, kind, reason, note);
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    async fn sync(&mut self) -> Result<Action, Error> {
        let everything = LabelSelector::default();
        if self.d.spec.as_ref().map(|s| &s.selector) == Some(&everything) {
            self.event(
                Kind::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let mut status = self.status();
            if status.observed_generation < self.d.metadata.generation {
                status.observed_generation = self.d.metadata.generation;
                self.write_status(status).await?;
            }
            return Ok(Action::await_change());
        }
        let mut rss = self.claim_replica_sets().await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            let (new, old) = self.new_and_old(&mut rss, false).await?;
            self.sync_status(new.as_ref(), &old).await?;
            return Ok(Action::await_change());
        }
        self.check_paused_conditions().await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event(&mut rss).await? {
            self.scale_sync(&mut rss, paused).await?;
        } else if is_recreate(&self.d) {
            self.rollout_recreate(&mut rss).await?;
        } else {
            self.rollout_rolling(&mut rss).await?;
        }
        Ok(self.requeue.map_or(Action::await_change(), Action::requeue))
    }

    /// Upstream's ClaimReplicaSets: the deployment's ReplicaSets, orphans adopted and strays
    /// released.
    async fn claim_replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let namespace = self.d.namespace().unwrap_or_default();
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let selector = selector_of(&self.d);
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let reference = controller_ref(&self.d);
        let mut can_adopt = None;
        let mut claimed = Vec::new();
        for rs in self.shared.replica_sets.state() {
            if rs.metadata.namespace.as_deref() != Some(namespace.as_str()) {
                continue;
            }
            match ownership::classify(&uid, deleting, selector.as_ref(), &rs.metadata) {
                Claim::Owned => claimed.push(rs.as_ref().clone()),
                Claim::Ignore => {}
                Claim::Release => ownership::release(&self.replica_sets, &uid, rs.as_ref())
                    .await
                    .map_err(api_error(&self.key, "releasing a ReplicaSet"))?,
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        let fresh = self
                            .deployments
                            .get_opt(&self.d.name_any())
                            .await
                            .map_err(api_error(&self.key, "rechecking before adoption"))?;
                        can_adopt = Some(fresh.is_some_and(|f| {
                            f.metadata.uid.as_deref() == Some(uid.as_str())
                                && f.metadata.deletion_timestamp.is_none()
                        }));
                    }
                    if can_adopt == Some(true) {
                        ownership::adopt(&self.replica_sets, &reference, rs.as_ref())
                            .await
                            .map_err(api_error(&self.key, "adopting a ReplicaSet"))?;
                        claimed.push(rs.as_ref().clone());
                    }
                }
            }
        }
        Ok(claimed)
    }

    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let n = |v: Option<i32>| v.unwrap_or(0);
        let patch = json!({"status": {
            "observedGeneration": status.observed_generation,
            "replicas": n(status.replicas),
            "updatedReplicas": n(status.updated_replicas),
            "readyReplicas": n(status.ready_replicas),
            "availableReplicas": n(status.available_replicas),
            "unavailableReplicas": n(status.unavailable_replicas),
            "collisionCount": status.collision_count,
            "conditions": status.conditions,
        }});
        let updated = self
            .deployments
            .patch_status(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(api_error(&self.key, "updating status"))?;
        self.d.status = updated.status;
        self.d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Upstream's SetDeploymentRevision, written at once: the status endpoint keeps metadata.
    async fn set_revision(&mut self, revision: &str) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        let updated = self
            .deployments
            .patch(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(api_error(&self.key, "setting the revision"))?;
        self.d.metadata.annotations = updated.metadata.annotations;
        Ok(())
    }

    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut status = self.status();
        let current = condition(&status, PROGRESSING);
        if current.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return Ok(());
        }
        let paused_recorded = current.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let now = Timestamp::now();
        if paused && !paused_recorded {
            set_condition(
                &mut status,
                new_condition(
                    PROGRESSING,
                    "Unknown",
                    PAUSED,
                    "Deployment is paused".into(),
                    now,
                ),
            );
        } else if !paused && paused_recorded {
            set_condition(
                &mut status,
                new_condition(
                    PROGRESSING,
                    "Unknown",
                    RESUMED,
                    "Deployment is resumed".into(),
                    now,
                ),
            );
        } else {
            return Ok(());
        }
        self.write_status(status).await
    }

    /// Upstream's getAllReplicaSetsAndSyncRevision: the new ReplicaSet (created if asked and
    /// missing) and the old ones.
    async fn new_and_old(
        &mut self,
        rss: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let new_index = find_new(&self.d, rss);
        let old: Vec<ReplicaSet> = rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_index)
            .map(|(_, rs)| rs.clone())
            .collect();
        let new_revision = old.iter().map(revision).max().unwrap_or(0) + 1;
        let now = Timestamp::now();
        if let Some(i) = new_index {
            let mut copy = rss[i].clone();
            let annotations_changed =
                set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = copy.spec.get_or_insert_with(Default::default);
            if annotations_changed || spec.min_ready_seconds != min_ready {
                spec.min_ready_seconds = min_ready;
                copy = self
                    .replica_sets
                    .replace(&copy.name_any(), &PostParams::default(), &copy)
                    .await
                    .map_err(api_error(&self.key, "updating the new ReplicaSet"))?;
                rss[i] = copy.clone();
                return Ok((Some(copy), old));
            }
            if let Some(r) = copy
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned()
            {
                self.set_revision(&r).await?;
            }
            let mut status = self.status();
            if progress_deadline(&self.d).is_some() && condition(&status, PROGRESSING).is_none() {
                let message = format!("Found new replica set {:?}", copy.name_any());
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", FOUND_NEW_RS, message, now),
                );
                self.write_status(status).await?;
            }
            return Ok((Some(copy), old));
        }
        if !create {
            return Ok((None, old));
        }
        let Some(spec) = self.d.spec.clone() else {
            return Ok((None, old));
        };
        let status = self.status();
        let hash = compute_hash(&spec.template, status.collision_count);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let mut new = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                owner_references: Some(vec![controller_ref(&self.d)]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all_replicas: i32 = old.iter().map(rs_replicas).sum();
        let replicas = new_rs_new_replicas(&self.d, all_replicas, 0);
        set_rs_replicas(&mut new, replicas);
        set_new_rs_annotations(&self.d, &mut new, new_revision, false);
        let created = match self.replica_sets.create(&PostParams::default(), &new).await {
            Ok(created) => {
                if replicas > 0 {
                    self.event(
                        Kind::Normal,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {name} from 0 to {replicas}"),
                    );
                }
                created
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = self
                    .replica_sets
                    .get(&name)
                    .await
                    .map_err(api_error(&self.key, "reading an existing ReplicaSet"))?;
                let ours = controller_of(&existing.metadata).map(|r| r.uid.as_str())
                    == self.d.metadata.uid.as_deref();
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    let mut status = self.status();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    return Err(Error::Collision {
                        key: self.key.clone(),
                        name,
                    });
                }
                rss.push(existing.clone());
                return Ok((Some(existing), old));
            }
            Err(error) => {
                let message = format!(
                    "Failed to create new replica set {name:?}: {}",
                    error_message(&error)
                );
                if progress_deadline(&self.d).is_some() {
                    let mut status = self.status();
                    set_condition(
                        &mut status,
                        new_condition(PROGRESSING, "False", FAILED_RS_CREATE, message.clone(), now),
                    );
                    self.write_status(status).await?;
                }
                self.event(Kind::Warning, FAILED_RS_CREATE, message);
                return Err(Error::Api {
                    key: self.key.clone(),
                    action: "creating the new ReplicaSet",
                    source: error,
                });
            }
        };
        self.set_revision(&new_revision.to_string()).await?;
        if progress_deadline(&self.d).is_some() {
            let mut status = self.status();
            let message = format!("Created new replica set {:?}", created.name_any());
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "True", NEW_RS_CREATED, message, now),
            );
            self.write_status(status).await?;
        }
        rss.push(created.clone());
        Ok((Some(created), old))
    }

    /// Upstream's scaleReplicaSet: size and the replicas annotations in one update.
    async fn scale_rs(
        &mut self,
        rs: &mut ReplicaSet,
        size: i32,
        operation: &str,
    ) -> Result<bool, Error> {
        let old = rs_replicas(rs);
        let replicas = replicas(&self.d);
        let mut copy = rs.clone();
        let annotations_changed =
            set_replicas_annotations(&mut copy, replicas, replicas + max_surge(&self.d));
        if old == size && !annotations_changed {
            return Ok(false);
        }
        set_rs_replicas(&mut copy, size);
        *rs = self
            .replica_sets
            .replace(&copy.name_any(), &PostParams::default(), &copy)
            .await
            .map_err(api_error(&self.key, "scaling a ReplicaSet"))?;
        if old != size {
            self.event(
                Kind::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {operation} replica set {} from {old} to {size}",
                    rs.name_any()
                ),
            );
        }
        Ok(old != size)
    }

    async fn scale_and_record(&mut self, rs: &mut ReplicaSet, size: i32) -> Result<bool, Error> {
        let current = rs_replicas(rs);
        if current == size {
            return Ok(false);
        }
        let operation = if current < size { "up" } else { "down" };
        self.scale_rs(rs, size, operation).await
    }

    async fn is_scaling_event(&mut self, rss: &mut Vec<ReplicaSet>) -> Result<bool, Error> {
        let (new, old) = self.new_and_old(rss, false).await?;
        let want = replicas(&self.d);
        Ok(new
            .iter()
            .chain(old.iter())
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| desired_annotation(rs).is_some_and(|d| d != want)))
    }

    /// Upstream's sync: scale (proportionally mid-rollout), clean up when paused, status.
    async fn scale_sync(&mut self, rss: &mut Vec<ReplicaSet>, paused: bool) -> Result<(), Error> {
        let (mut new, mut old) = self.new_and_old(rss, false).await?;
        self.scale(&mut new, &mut old).await?;
        if paused {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new.iter()).collect();
        let status = calculate_status(&all, new.as_ref(), &self.d, Timestamp::now());
        if !same_status(&self.status(), &status) {
            self.write_status(status).await?;
        }
        Ok(())
    }

    async fn scale(
        &mut self,
        new: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<(), Error> {
        let want = replicas(&self.d);
        old.sort_by(|a, b| by_creation(b, a));
        let active = new.iter().filter(|rs| rs_replicas(rs) > 0).count()
            + old.iter().filter(|rs| rs_replicas(rs) > 0).count();
        if active <= 1 {
            // One active ReplicaSet (or none: then the newest) takes the whole size.
            let target: Option<&mut ReplicaSet> = if active == 1 {
                new.iter_mut()
                    .chain(old.iter_mut())
                    .find(|rs| rs_replicas(rs) > 0)
            } else if new.is_some() {
                new.as_mut()
            } else {
                old.first_mut()
            };
            if let Some(rs) = target {
                if rs_replicas(rs) != want {
                    let mut copy = rs.clone();
                    self.scale_and_record(&mut copy, want).await?;
                    *rs = copy;
                }
            }
            return Ok(());
        }
        if new.as_ref().is_some_and(|rs| is_saturated(&self.d, rs)) {
            for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
                let mut copy = rs.clone();
                self.scale_and_record(&mut copy, 0).await?;
                *rs = copy;
            }
            return Ok(());
        }
        if is_recreate(&self.d) {
            return Ok(());
        }
        let mut all: Vec<ReplicaSet> = old
            .iter()
            .chain(new.iter())
            .filter(|rs| rs_replicas(rs) > 0)
            .cloned()
            .collect();
        let total: i32 = all.iter().map(rs_replicas).sum();
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        let operation = match to_add.cmp(&0) {
            std::cmp::Ordering::Greater => {
                all.sort_by(|a, b| {
                    rs_replicas(b)
                        .cmp(&rs_replicas(a))
                        .then_with(|| by_creation(b, a))
                });
                "up"
            }
            std::cmp::Ordering::Less => {
                all.sort_by(|a, b| {
                    rs_replicas(b)
                        .cmp(&rs_replicas(a))
                        .then_with(|| by_creation(a, b))
                });
                "down"
            }
            std::cmp::Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes = Vec::with_capacity(all.len());
        for rs in &all {
            if to_add != 0 {
                let share = proportion(&self.d, rs, to_add, added);
                sizes.push(rs_replicas(rs) + share);
                added += share;
            } else {
                sizes.push(rs_replicas(rs));
            }
        }
        if to_add != 0 {
            if let Some(first) = sizes.first_mut() {
                *first = (*first + to_add - added).max(0);
            }
        }
        for (rs, size) in all.iter_mut().zip(sizes) {
            self.scale_rs(rs, size, operation).await?;
        }
        Ok(())
    }

    /// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit`, oldest revisions first.
    async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .filter(|l| *l != i32::MAX)
        else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| {
            revision(a)
                .cmp(&revision(b))
                .then_with(|| by_creation(a, b))
        });
        for rs in cleanable.into_iter().take(excess as usize) {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
            if rs_status(rs).0 != 0 || rs_replicas(rs) != 0 || rs.metadata.generation > observed {
                continue;
            }
            match self
                .replica_sets
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::Api {
                        key: self.key.clone(),
                        action: "deleting an old ReplicaSet",
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    async fn sync_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), Error> {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let status = calculate_status(&all, new, &self.d, Timestamp::now());
        if !same_status(&self.status(), &status) {
            self.write_status(status).await?;
        }
        Ok(())
    }

    async fn rollout_rolling(&mut self, rss: &mut Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, mut old) = self.new_and_old(rss, true).await?;
        let Some(mut new) = new else {
            return Ok(());
        };
        let want = replicas(&self.d);
        // Scale up, if we can.
        let current = rs_replicas(&new);
        let target = if current > want {
            want
        } else {
            let all: i32 = old.iter().map(rs_replicas).sum::<i32>() + current;
            new_rs_new_replicas(&self.d, all, current)
        };
        if self.scale_and_record(&mut new, target).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        // Scale down, if we can.
        if self.reconcile_old(&new, &mut old).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(Some(&new)).collect();
        let status = calculate_status(&all, Some(&new), &self.d, Timestamp::now());
        if complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// Upstream's reconcileOldReplicaSets: unhealthy old replicas go first, then old ones
    /// as far as maxUnavailable allows.
    async fn reconcile_old(
        &mut self,
        new: &ReplicaSet,
        old: &mut [ReplicaSet],
    ) -> Result<bool, Error> {
        let old_count: i32 = old.iter().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = old_count + rs_replicas(new);
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(new) - rs_status(new).2;
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        old.sort_by(by_creation);
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (size, available) = (rs_replicas(rs), rs_status(rs).2);
            if size == 0 || size == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(size - available);
            let mut copy = rs.clone();
            self.scale_and_record(&mut copy, size - down).await?;
            *rs = copy;
            cleaned += down;
        }
        let available: i32 = old.iter().chain(Some(new)).map(|rs| rs_status(rs).2).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for rs in old.iter_mut() {
                if scaled >= total {
                    break;
                }
                let size = rs_replicas(rs);
                if size == 0 {
                    continue;
                }
                let down = size.min(total - scaled);
                let mut copy = rs.clone();
                self.scale_and_record(&mut copy, size - down).await?;
                *rs = copy;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&mut self, rss: &mut Vec<ReplicaSet>) -> Result<(), Error> {
        let (mut new, mut old) = self.new_and_old(rss, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
            let mut copy = rs.clone();
            scaled_down |= self.scale_and_record(&mut copy, 0).await?;
            *rs = copy;
        }
        if scaled_down || self.old_pods_running(new.as_ref(), &old) {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        if new.is_none() {
            (new, old) = self.new_and_old(rss, true).await?;
        }
        if let Some(rs) = new.as_mut() {
            self.scale_and_record(rs, replicas(&self.d)).await?;
        }
        if complete(&self.d, &self.status()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new.as_ref(), &old).await
    }

    /// Whether any old ReplicaSet still has pods that are not finished.
    fn old_pods_running(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> bool {
        if old.iter().map(|rs| rs_status(rs).0).sum::<i32>() > 0 {
            return true;
        }
        let old_uids: Vec<&str> = old
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        let new_uid = new.and_then(|rs| rs.metadata.uid.as_deref());
        let namespace = self.d.metadata.namespace.as_deref();
        self.shared.pods.state().iter().any(|p| {
            p.metadata.namespace.as_deref() == namespace
                && controller_of(&p.metadata).is_some_and(|r| {
                    Some(r.uid.as_str()) != new_uid && old_uids.contains(&r.uid.as_str())
                })
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
    }

    /// Upstream's syncRolloutStatus: counts, Available, and the Progressing condition judged
    /// against the progress deadline; a check is scheduled for when the deadline passes.
    async fn sync_rollout_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), Error> {
        let now = Timestamp::now();
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let mut status = calculate_status(&all, new, &self.d, now);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = condition(&self.status(), PROGRESSING).cloned();
        let finished = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        if deadline.is_some() && !finished {
            let name = new.map(|rs| rs.name_any());
            if complete(&self.d, &status) {
                let message = match &name {
                    Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                    None => format!(
                        "Deployment {:?} has successfully progressed.",
                        self.d.name_any()
                    ),
                };
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, now),
                );
            } else if progressing(&self.d, &status) {
                let message = match &name {
                    Some(n) => format!("ReplicaSet {n:?} is progressing."),
                    None => format!("Deployment {:?} is progressing.", self.d.name_any()),
                };
                let mut c = new_condition(PROGRESSING, "True", RS_UPDATED, message, now);
                if let Some(current) = &current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if timed_out(&self.d, &status, now) {
                let message = match &name {
                    Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                    None => format!(
                        "Deployment {:?} has timed out progressing.",
                        self.d.name_any()
                    ),
                };
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "False", TIMED_OUT, message, now),
                );
            }
        }
        let failures: Vec<_> = new
            .into_iter()
            .chain(all.iter().copied())
            .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
            .filter(|c| c.type_ == REPLICA_FAILURE)
            .cloned()
            .collect();
        match failures.first() {
            Some(c) => set_condition(
                &mut status,
                k8s_openapi::api::apps::v1::DeploymentCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                },
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if same_status(&self.status(), &status) {
            self.requeue_stuck(&status, now);
            return Ok(());
        }
        self.write_status(status).await
    }

    /// Upstream's requeueStuckDeployment: look again when the progress deadline passes.
    fn requeue_stuck(&mut self, status: &DeploymentStatus, now: Timestamp) {
        let Some(deadline) = progress_deadline(&self.d) else {
            return;
        };
        let current = self.status();
        let Some(c) = condition(&current, PROGRESSING) else {
            return;
        };
        if complete(&self.d, status) || c.reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let Some(updated) = c.last_update_time.as_ref() else {
            return;
        };
        let due = updated.0 + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(deadline));
        let after = due.duration_since(now).as_secs_f64();
        let delay = if after < 1.0 {
            Duration::from_millis(100)
        } else {
            Duration::from_secs_f64(after.ceil() + 1.0)
        };
        self.requeue = Some(delay);
    }
}
