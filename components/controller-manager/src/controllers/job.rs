//! job-controller: runs a Job's pods to completion. Pods carry the
//! `batch.kubernetes.io/job-tracking` finalizer until their outcome is counted in the Job's
//! status (upstream's tracking with finalizers, through `uncountedTerminatedPods`); failed
//! pods are replaced after an exponential backoff until `backoffLimit`; `activeDeadlineSeconds`
//! bounds the run. As in 1.33, `FailureTarget`/`SuccessCriteriaMet` come first and the
//! terminal `Failed`/`Complete` once no pod of the Job is left running.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::controllers::pod_control::{
    self, controller_ref, is_active, is_conflict_or_gone, is_ready, key_of, owned_by, phase,
    Expectations,
};

const QUEUE: &str = "job";
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(6 * 60);

const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
const BACKOFF_LIMIT_MESSAGE: &str = "Job has reached the specified backoff limit";
const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";
const COMPLETIONS_REACHED: &str = "CompletionsReached";
const COMPLETIONS_MESSAGE: &str = "Reached expected number of succeeded pods";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of job {job}: {source}")]
    Status { job: String, source: kube::Error },
    #[error("creating a pod of job {job}: {source}")]
    CreatePod { job: String, source: kube::Error },
    #[error("deleting pod {pod}: {source}")]
    DeletePod { pod: String, source: kube::Error },
    #[error("removing the tracking finalizer of pod {pod}: {source}")]
    Finalizer { pod: String, source: kube::Error },
}

struct Shared {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    expectations: Expectations,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
    /// The resourceVersion each Job got from this controller's latest status write. A Job in
    /// the cache older than that is a view from before the write: syncing it would count pods
    /// again or create pods that are already there, so the sync waits for the watch.
    written: Mutex<HashMap<String, u64>>,
    recorder: Recorder,
}

/// Failures since the last success and when the latest happened (upstream's backoffRecord).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BackoffRecord {
    pub failures: u32,
    pub last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after a sync that saw `succeeded` and `failed` newly finished pods.
    pub fn observe(self, succeeded: usize, failed: usize, now: Timestamp) -> BackoffRecord {
        if failed > 0 {
            BackoffRecord {
                failures: self.failures.saturating_add(failed as u32),
                last_failure: Some(now),
            }
        } else if succeeded > 0 {
            BackoffRecord::default()
        } else {
            self
        }
    }

    /// How long replacement pods must still wait at `now`: 10 s doubled per failure, capped.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let delay = BACKOFF_BASE
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(BACKOFF_MAX);
        let elapsed = Duration::from_millis(
            u64::try_from(now.as_millisecond() - last.as_millisecond()).unwrap_or(0),
        );
        delay.saturating_sub(elapsed)
    }
}

pub async fn run(ctx: Arc<Context>) {
    let (pods, pod_events) = pod_control::reflect(Api::<Pod>::all(ctx.client.clone()));
    let shared = Arc::new(Shared {
        recorder: ctx.recorder("job-controller"),
        pods,
        expectations: Expectations::default(),
        backoff: Mutex::default(),
        written: Mutex::default(),
        ctx: ctx.clone(),
    });
    Controller::new(
        Api::<Job>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(pod_events)
    .with_config(controller::Config::default().concurrency(ctx.options.concurrency.job))
    .run(reconcile, error_policy, shared)
    .for_each(|_| async {})
    .await;
}

fn error_policy(_: Arc<Job>, error: &Error, _: Arc<Shared>) -> Action {
    tracing::warn!(%error, "job sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(job: Arc<Job>, shared: Arc<Shared>) -> Result<Action, Error> {
    let timer = shared.ctx.metrics.sync(QUEUE);
    let result = sync(&job, &shared).await;
    timer.done(result.is_ok());
    result
}

/// The outcome of a pod that is done: `Some(true)` succeeded, `Some(false)` failed. A pod
/// being deleted before it succeeded counts as failed (it may never reach a phase).
pub fn outcome(pod: &Pod) -> Option<bool> {
    match phase(pod) {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if pod.metadata.deletion_timestamp.is_some() => Some(false),
        _ => None,
    }
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The completion index a pod carries (annotation, else label), if valid.
pub fn pod_index(pod: &Pod) -> Option<i32> {
    let from = |m: Option<&std::collections::BTreeMap<String, String>>| {
        m.and_then(|m| m.get(COMPLETION_INDEX))
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|i| *i >= 0)
    };
    from(pod.metadata.annotations.as_ref()).or_else(|| from(pod.metadata.labels.as_ref()))
}

/// Parses `completedIndexes` ("1,3-5").
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    indexes.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    indexes.insert(i);
                }
            }
        }
    }
    indexes
}

/// Formats indexes as upstream does: ascending, consecutive runs as `first-last`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((first, last)) if i == last + 1 => Some((first, i)),
            Some(done) => {
                parts.push(done);
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    parts.extend(run);
    parts
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn condition_true(status: Option<&JobStatus>, type_: &str) -> Option<JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .cloned()
}

/// Whether the Job has its terminal condition.
pub fn is_finished(job: &Job) -> bool {
    let status = job.status.as_ref();
    condition_true(status, "Complete").is_some() || condition_true(status, "Failed").is_some()
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(status: &mut JobStatus, new: JobCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) if existing.status == new.status => {
            existing.reason = new.reason;
            existing.message = new.message;
        }
        Some(existing) => *existing = new,
        None => conditions.push(new),
    }
}

/// What a sync decided, after counting: the pods to create (their indexes for an Indexed
/// Job) and to delete, the conditions to add, and when to look again.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<Option<i32>>,
    pub delete: Vec<String>,
    pub conditions: Vec<JobCondition>,
    pub completion_time: bool,
    pub requeue: Option<Duration>,
    pub start: bool,
    /// Warning reason/message or Normal "Completed" when the terminal condition is added.
    pub finished_event: Option<(bool, String, String)>,
}

/// The decision of one sync. `status` already counts every finished pod (succeeded/failed plus
/// `uncountedTerminatedPods`); `pods` are the Job's pods still in the store.
pub fn plan(
    job: &Job,
    status: &JobStatus,
    pods: &[&Pod],
    backoff: Duration,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = job.spec.as_ref() else {
        return plan;
    };
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let succeeded =
        status.succeeded.unwrap_or(0) + uncounted.succeeded.as_ref().map_or(0, |v| v.len() as i32);
    let failed =
        status.failed.unwrap_or(0) + uncounted.failed.as_ref().map_or(0, |v| v.len() as i32);
    let active: Vec<&Pod> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let terminating = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && outcome(p).is_none_or(|s| !s))
        .count();
    let indexed = is_indexed(job);
    let completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let suspended = spec.suspend == Some(true);
    if status.start_time.is_none() && !suspended {
        plan.start = true;
    }
    let status_ref = Some(status);

    // A failure or success already decided stays decided.
    let mut failure = condition_true(status_ref, "FailureTarget")
        .map(|c| (c.reason.unwrap_or_default(), c.message.unwrap_or_default()));
    let restarts: i32 = if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure")
    {
        active
            .iter()
            .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
            .flatten()
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };
    if failure.is_none() && failed + restarts > spec.backoff_limit.unwrap_or(6) {
        failure = Some((BACKOFF_LIMIT_EXCEEDED.into(), BACKOFF_LIMIT_MESSAGE.into()));
    }
    let start = status.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    if let (None, Some(deadline), false) = (&failure, spec.active_deadline_seconds, suspended) {
        let left = start.as_second() + deadline - now.as_second();
        if left <= 0 {
            failure = Some((DEADLINE_EXCEEDED.into(), DEADLINE_MESSAGE.into()));
        } else {
            plan.requeue = Some(Duration::from_secs(left as u64));
        }
    }
    let success = failure.is_none()
        && (condition_true(status_ref, "SuccessCriteriaMet").is_some()
            || match (spec.completions, indexed) {
                (Some(c), true) => completed.iter().filter(|i| **i < c).count() as i32 >= c,
                (Some(c), false) => succeeded >= c,
                (None, _) => succeeded > 0 && active.is_empty(),
            });

    if let Some((reason, message)) = failure {
        if condition_true(status_ref, "FailureTarget").is_none() {
            plan.conditions
                .push(condition("FailureTarget", "True", &reason, &message, now));
        }
        plan.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if active.is_empty() && terminating == 0 {
            plan.conditions
                .push(condition("Failed", "True", &reason, &message, now));
            plan.finished_event = Some((false, reason, message));
        }
        plan.requeue = None;
        return plan;
    }
    if success {
        if condition_true(status_ref, "SuccessCriteriaMet").is_none() {
            plan.conditions.push(condition(
                "SuccessCriteriaMet",
                "True",
                COMPLETIONS_REACHED,
                COMPLETIONS_MESSAGE,
                now,
            ));
        }
        plan.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if active.is_empty() && terminating == 0 {
            plan.conditions.push(condition(
                "Complete",
                "True",
                COMPLETIONS_REACHED,
                COMPLETIONS_MESSAGE,
                now,
            ));
            plan.completion_time = true;
            plan.finished_event = Some((true, "Completed".into(), "Job completed".into()));
        }
        plan.requeue = None;
        return plan;
    }

    let suspended_now = condition_true(status_ref, "Suspended").is_some();
    if suspended {
        if !suspended_now {
            plan.conditions.push(condition(
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            ));
        }
        plan.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        plan.requeue = None;
        return plan;
    }
    if suspended_now {
        plan.conditions.push(condition(
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        ));
    }

    if indexed {
        let completions = spec.completions.unwrap_or(0);
        let mut running = BTreeSet::new();
        let mut keep = 0;
        // Extra pods for one index, pods for completed or out-of-range indexes go.
        for pod in &active {
            match pod_index(pod) {
                Some(i) if i < completions && !completed.contains(&i) && running.insert(i) => {
                    keep += 1
                }
                _ => plan.delete.extend(pod.metadata.name.clone()),
            }
        }
        let room = (parallelism - keep).max(0) as usize;
        let missing: Vec<i32> = (0..completions)
            .filter(|i| !completed.contains(i) && !running.contains(i))
            .take(room)
            .collect();
        if backoff.is_zero() {
            plan.create = missing.into_iter().map(Some).collect();
        } else if !missing.is_empty() {
            plan.requeue = Some(backoff);
        }
        return plan;
    }

    let want = match spec.completions {
        Some(c) => parallelism.min(c - succeeded).max(0),
        None if succeeded > 0 => active.len() as i32,
        None => parallelism,
    } as usize;
    if active.len() > want {
        // Pods not yet scheduled, then not yet ready, go first.
        let mut ranked = active.clone();
        ranked.sort_by_key(|p| {
            let scheduled = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
            (scheduled, is_ready(p))
        });
        plan.delete = ranked
            .iter()
            .take(active.len() - want)
            .filter_map(|p| p.metadata.name.clone())
            .collect();
    } else if active.len() < want {
        if backoff.is_zero() {
            plan.create = vec![None; want - active.len()];
        } else {
            plan.requeue = Some(backoff);
        }
    }
    plan
}

/// Newly finished pods that still carry the finalizer and are not yet in
/// `uncountedTerminatedPods`, added to it (and their indexes to `completedIndexes`). Returns
/// how many succeeded and failed.
pub fn count_finished(job: &Job, status: &mut JobStatus, pods: &[&Pod]) -> (usize, usize) {
    let indexed = is_indexed(job);
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let (mut new_succeeded, mut new_failed) = (0, 0);
    for pod in pods.iter().filter(|p| has_finalizer(p)) {
        let (Some(uid), Some(succeeded)) = (pod.metadata.uid.clone(), outcome(pod)) else {
            continue;
        };
        let known = uncounted.succeeded.iter().flatten().any(|u| *u == uid)
            || uncounted.failed.iter().flatten().any(|u| *u == uid);
        if known {
            continue;
        }
        if succeeded {
            if indexed {
                match pod_index(pod) {
                    Some(i) if i < completions => {
                        completed.insert(i);
                    }
                    _ => continue,
                }
            }
            uncounted.succeeded.get_or_insert_with(Vec::new).push(uid);
            new_succeeded += 1;
        } else {
            uncounted.failed.get_or_insert_with(Vec::new).push(uid);
            new_failed += 1;
        }
    }
    if indexed {
        status.completed_indexes = Some(format_indexes(&completed));
    }
    (new_succeeded, new_failed)
}

/// Moves uids whose pods no longer carry the finalizer (or are gone) from
/// `uncountedTerminatedPods` into the counts.
pub fn settle_counted(status: &mut JobStatus, still_tracked: &BTreeSet<String>) {
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let settle = |uids: &mut Option<Vec<String>>| {
        let list = uids.get_or_insert_with(Vec::new);
        let before = list.len();
        list.retain(|u| still_tracked.contains(u));
        (before - list.len()) as i32
    };
    let succeeded = settle(&mut uncounted.succeeded);
    let failed = settle(&mut uncounted.failed);
    if succeeded > 0 {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + succeeded);
    }
    if failed > 0 {
        status.failed = Some(status.failed.unwrap_or(0) + failed);
    }
}

/// The pod for one slot of the Job (`index` for an Indexed Job).
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = pod_control::pod_from_template(&template, controller_ref(job));
    pod.metadata.namespace = job.namespace();
    pod.metadata.generate_name = Some(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.into());
    if let Some(i) = index {
        let value = i.to_string();
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), value.clone());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), value);
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.is_none() {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: COMPLETION_INDEX_ENV.into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            };
            let containers = spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten());
            for container in containers {
                let vars = container.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                    vars.push(env.clone());
                }
            }
        }
    }
    pod
}

async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let name = pod.name_any();
    let remaining: Vec<&String> = pod
        .finalizers()
        .iter()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": remaining,
        "resourceVersion": pod.resource_version(),
    }});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Finalizer { pod: name, source }),
    }
}

async fn publish(shared: &Shared, job: &Job, type_: EventType, reason: &str, note: String) {
    publish_related(shared, job, type_, reason, note, None).await;
}

/// Records an event about the owner; `related` names the object it concerns (events about
/// different objects are then kept apart instead of merged into one series).
async fn publish_related(
    shared: &Shared,
    job: &Job,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    super::pod_control::publish_event(&shared.recorder, job, type_, reason, note, related).await;
}

async fn sync(job: &Job, shared: &Shared) -> Result<Action, Error> {
    let key = key_of(&job.metadata);
    let namespace = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let pod_api = Api::<Pod>::namespaced(shared.ctx.client.clone(), &namespace);
    let job_api = Api::<Job>::namespaced(shared.ctx.client.clone(), &namespace);
    let owned = owned_by(&shared.pods, &namespace, &uid);
    let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let status_error = |source| Error::Status {
        job: key.clone(),
        source,
    };

    if job.metadata.deletion_timestamp.is_some() || is_finished(job) {
        // Nothing more to count: the pods may go.
        for pod in pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&pod_api, pod).await?;
        }
        lock(&shared.written).remove(&key);
        if job.metadata.deletion_timestamp.is_some() {
            shared.expectations.forget(&key);
            lock(&shared.backoff).remove(&key);
        }
        return Ok(Action::await_change());
    }
    if !shared.expectations.satisfied(&key, &shared.pods) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    if is_stale(&shared.written, &key, job) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let now = Timestamp::now();
    let old_status = job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();

    // Count finished pods: first recorded as uncounted, then their finalizers go, then the
    // counts move, so a pod is never counted twice nor lost.
    let (new_succeeded, new_failed) = count_finished(job, &mut status, &pods);
    let record = {
        let mut records = lock(&shared.backoff);
        let record = records.entry(key.clone()).or_default();
        *record = record.observe(new_succeeded, new_failed, now);
        *record
    };
    // Every status write names the resourceVersion it was computed from: the counts add up
    // over syncs, so a write from an older view must fail rather than undo a newer one.
    let mut version = job.resource_version();
    if new_succeeded + new_failed > 0 {
        match write_status(&job_api, job, &old_status, &status, version).await {
            Ok(written) => {
                version = written.resource_version();
                remember_write(&shared.written, &key, &written);
            }
            Err(e) if is_conflict_or_gone(&e) => {
                return Ok(Action::requeue(Duration::from_secs(1)))
            }
            Err(e) => return Err(status_error(e)),
        }
    }
    let uncounted: BTreeSet<String> = status
        .uncounted_terminated_pods
        .iter()
        .flat_map(|u| {
            u.succeeded
                .iter()
                .flatten()
                .chain(u.failed.iter().flatten())
        })
        .cloned()
        .collect();
    let mut still_tracked = BTreeSet::new();
    for pod in pods.iter().filter(|p| has_finalizer(p)) {
        let pod_uid = pod.uid().unwrap_or_default();
        if !uncounted.contains(&pod_uid) {
            continue;
        }
        match remove_finalizer(&pod_api, pod).await {
            Ok(()) => shared
                .expectations
                .expect_finalizer_removed(&key, pod, TRACKING_FINALIZER),
            Err(error) => {
                tracing::warn!(%error, "job pod finalizer");
                still_tracked.insert(pod_uid);
            }
        }
    }
    let written = status.clone();
    settle_counted(&mut status, &still_tracked);

    let remaining = record.remaining(now);
    let plan = plan(job, &status, &pods, remaining, now);
    if plan.start {
        status.start_time = Some(Time(now));
    }
    for condition in &plan.conditions {
        set_condition(&mut status, condition.clone());
    }
    if plan.completion_time {
        status.completion_time = Some(Time(now));
    }

    let mut deleted = 0;
    for name in &plan.delete {
        let Some(pod) = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        else {
            continue;
        };
        match pod_api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                shared.expectations.expect_delete(&key, pod);
                deleted += 1;
                publish_related(
                    shared,
                    job,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                    Some(pod.object_ref(&())),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::DeletePod {
                    pod: name.clone(),
                    source,
                })
            }
        }
    }
    let mut created = 0;
    for index in &plan.create {
        match pod_api
            .create(&PostParams::default(), &new_pod(job, *index))
            .await
        {
            Ok(pod) => {
                shared.expectations.expect_create(&key, &pod);
                created += 1;
                publish_related(
                    shared,
                    job,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.name_any()),
                    Some(pod.object_ref(&())),
                )
                .await;
            }
            Err(source) => {
                publish(
                    shared,
                    job,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {source}"),
                )
                .await;
                return Err(Error::CreatePod {
                    job: key.clone(),
                    source,
                });
            }
        }
    }

    let active_now: Vec<&&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let active = active_now.len() as i32 + created - deleted;
    status.active = (active > 0).then_some(active);
    status.ready = Some(active_now.iter().filter(|p| is_ready(p)).count() as i32);
    status.terminating = Some(
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && outcome(p) != Some(true))
            .count() as i32
            + deleted,
    );
    let before = if new_succeeded + new_failed > 0 {
        &written
    } else {
        &old_status
    };
    if status != *before {
        match write_status(&job_api, job, before, &status, version).await {
            Ok(written) => remember_write(&shared.written, &key, &written),
            Err(e) if is_conflict_or_gone(&e) => {
                return Ok(Action::requeue(Duration::from_secs(1)))
            }
            Err(e) => return Err(status_error(e)),
        }
    }
    if let Some((normal, reason, message)) = plan.finished_event {
        let type_ = if normal {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(shared, job, type_, &reason, message).await;
    }
    Ok(match plan.requeue {
        Some(after) => Action::requeue(after.max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

/// Writes `status` (computed from `before`) as a merge patch that holds only if the Job is
/// still at `version`.
async fn write_status(
    api: &Api<Job>,
    job: &Job,
    before: &JobStatus,
    status: &JobStatus,
    version: Option<String>,
) -> Result<Job, kube::Error> {
    let mut patch = pod_control::status_patch(Some(before), status);
    patch["metadata"] = json!({ "resourceVersion": version });
    api.patch_status(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

fn resource_version_number(job: &Job) -> Option<u64> {
    job.metadata.resource_version.as_deref()?.parse().ok()
}

fn remember_write(written: &Mutex<HashMap<String, u64>>, key: &str, job: &Job) {
    if let Some(version) = resource_version_number(job) {
        lock(written).insert(key.to_string(), version);
    }
}

/// Whether the cached `job` predates this controller's latest status write. hakube's
/// resourceVersions are etcd revisions, so they order; one that does not parse never waits.
fn is_stale(written: &Mutex<HashMap<String, u64>>, key: &str, job: &Job) -> bool {
    let mut written = lock(written);
    let Some(&last) = written.get(key) else {
        return false;
    };
    match resource_version_number(job) {
        Some(seen) if seen < last => true,
        _ => {
            written.remove(key);
            false
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn job(completions: Option<i32>, parallelism: i32, indexed: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("ns".into()),
                uid: Some("job-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(1),
                completion_mode: Some(if indexed { "Indexed" } else { "NonIndexed" }.into()),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            ..Container::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, phase: &str, index: Option<i32>) -> Pod {
        let mut pod = new_pod(&job(Some(3), 3, index.is_some()), index);
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        });
        pod
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_000_000).unwrap()
    }

    #[test]
    fn a_new_job_starts_parallelism_pods() {
        let plan = plan(
            &job(Some(5), 2, false),
            &JobStatus::default(),
            &[],
            Duration::ZERO,
            now(),
        );
        assert_eq!(plan.create, vec![None, None]);
        assert!(plan.start);
    }

    #[test]
    fn completions_cap_the_pods_still_needed() {
        let job = job(Some(3), 3, false);
        let status = JobStatus {
            succeeded: Some(2),
            start_time: Some(Time(now())),
            ..JobStatus::default()
        };
        let running = pod("a", "Running", None);
        let plan = plan(&job, &status, &[&running], Duration::ZERO, now());
        assert!(plan.create.is_empty());
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn success_goes_through_success_criteria_met_to_complete() {
        let job = job(Some(1), 1, false);
        let status = JobStatus {
            succeeded: Some(1),
            start_time: Some(Time(now())),
            ..JobStatus::default()
        };
        let plan = plan(&job, &status, &[], Duration::ZERO, now());
        let types: Vec<&str> = plan.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, vec!["SuccessCriteriaMet", "Complete"]);
        assert!(plan.completion_time);
        assert_eq!(plan.finished_event.unwrap().1, "Completed");
    }

    #[test]
    fn exceeding_the_backoff_limit_fails_once_pods_are_gone() {
        let job = job(Some(1), 1, false);
        let status = JobStatus {
            failed: Some(2),
            start_time: Some(Time(now())),
            ..JobStatus::default()
        };
        let running = pod("a", "Running", None);
        let first = plan(&job, &status, &[&running], Duration::ZERO, now());
        assert_eq!(first.conditions[0].type_, "FailureTarget");
        assert_eq!(
            first.conditions[0].reason.as_deref(),
            Some(BACKOFF_LIMIT_EXCEEDED)
        );
        assert_eq!(first.delete, vec!["a".to_string()]);
        assert_eq!(first.conditions.len(), 1);
        let mut status = status;
        set_condition(&mut status, first.conditions[0].clone());
        let second = plan(&job, &status, &[], Duration::ZERO, now());
        assert_eq!(second.conditions.len(), 1);
        assert_eq!(second.conditions[0].type_, "Failed");
        assert_eq!(second.finished_event.unwrap().1, BACKOFF_LIMIT_EXCEEDED);
    }

    #[test]
    fn the_deadline_fails_the_job_and_is_waited_for() {
        let mut job = job(Some(1), 1, false);
        if let Some(spec) = job.spec.as_mut() {
            spec.active_deadline_seconds = Some(30);
        }
        let started = |ago: i64| JobStatus {
            start_time: Some(Time(
                Timestamp::from_second(now().as_second() - ago).unwrap(),
            )),
            ..JobStatus::default()
        };
        let running = pod("a", "Running", None);
        let early = plan(&job, &started(10), &[&running], Duration::ZERO, now());
        assert_eq!(early.requeue, Some(Duration::from_secs(20)));
        let late = plan(&job, &started(31), &[], Duration::ZERO, now());
        assert_eq!(
            late.conditions[1].reason.as_deref(),
            Some(DEADLINE_EXCEEDED)
        );
    }

    #[test]
    fn backoff_holds_replacements() {
        let job = job(Some(1), 1, false);
        let status = JobStatus {
            failed: Some(1),
            start_time: Some(Time(now())),
            ..JobStatus::default()
        };
        let plan = plan(&job, &status, &[], Duration::from_secs(4), now());
        assert!(plan.create.is_empty());
        assert_eq!(plan.requeue, Some(Duration::from_secs(4)));
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_and_resets_on_success() {
        let at = |s| Timestamp::from_second(s).unwrap();
        let record = BackoffRecord::default().observe(0, 1, at(100));
        assert_eq!(record.remaining(at(100)), Duration::from_secs(10));
        let record = record.observe(0, 1, at(110));
        assert_eq!(record.remaining(at(115)), Duration::from_secs(15));
        let many = BackoffRecord {
            failures: 30,
            last_failure: Some(at(0)),
        };
        assert_eq!(many.remaining(at(0)), BACKOFF_MAX);
        assert_eq!(
            record.observe(1, 0, at(200)).remaining(at(200)),
            Duration::ZERO
        );
    }

    #[test]
    fn indexed_jobs_create_missing_indexes_and_drop_duplicates() {
        let job = job(Some(4), 2, true);
        let status = JobStatus {
            completed_indexes: Some("0".into()),
            start_time: Some(Time(now())),
            ..JobStatus::default()
        };
        let one = pod("one", "Running", Some(1));
        let dup = pod("dup", "Running", Some(1));
        let plan = plan(&job, &status, &[&one, &dup], Duration::ZERO, now());
        assert_eq!(plan.delete, vec!["dup".to_string()]);
        assert_eq!(plan.create, vec![Some(2)]);
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let pod = new_pod(&job(Some(3), 3, true), Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(pod.annotations()[COMPLETION_INDEX], "2");
        assert_eq!(pod.labels()[COMPLETION_INDEX], "2");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        assert_eq!(
            spec.containers[0].env.as_ref().unwrap()[0].name,
            COMPLETION_INDEX_ENV
        );
        assert_eq!(pod.metadata.finalizers.unwrap(), vec![TRACKING_FINALIZER]);
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    #[test]
    fn a_job_older_than_the_last_status_write_waits_for_the_watch() {
        let written = Mutex::default();
        let mut seen = job(Some(1), 1, false);
        seen.metadata.resource_version = Some("41".into());
        assert!(!is_stale(&written, "ns/pi", &seen), "nothing written yet");
        let mut after_write = seen.clone();
        after_write.metadata.resource_version = Some("42".into());
        remember_write(&written, "ns/pi", &after_write);
        assert!(is_stale(&written, "ns/pi", &seen));
        assert!(!is_stale(&written, "ns/pi", &after_write));
        assert!(
            !is_stale(&written, "ns/pi", &seen),
            "once caught up the record is dropped"
        );
    }

    #[test]
    fn finished_pods_are_counted_once_through_uncounted() {
        let job = job(Some(3), 3, true);
        let mut status = JobStatus::default();
        let done = pod("done", "Succeeded", Some(1));
        let failed = pod("failed", "Failed", Some(0));
        let running = pod("running", "Running", Some(2));
        let pods = [&done, &failed, &running];
        assert_eq!(count_finished(&job, &mut status, &pods), (1, 1));
        assert_eq!(count_finished(&job, &mut status, &pods), (0, 0));
        assert_eq!(status.completed_indexes.as_deref(), Some("1"));
        settle_counted(&mut status, &BTreeSet::from(["uid-failed".to_string()]));
        assert_eq!(status.succeeded, Some(1));
        assert_eq!(status.failed, None);
        settle_counted(&mut status, &BTreeSet::new());
        assert_eq!(status.failed, Some(1));
        let uncounted = status.uncounted_terminated_pods.unwrap();
        assert!(uncounted.succeeded.unwrap().is_empty() && uncounted.failed.unwrap().is_empty());
    }

    #[test]
    fn indexes_format_as_upstream() {
        let set = parse_indexes("0,2-4,7");
        assert_eq!(set, BTreeSet::from([0, 2, 3, 4, 7]));
        assert_eq!(format_indexes(&set), "0,2-4,7");
        assert_eq!(format_indexes(&BTreeSet::from([1, 2])), "1-2");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn a_deleted_unfinished_pod_counts_as_failed() {
        let mut pod = pod("a", "Running", None);
        assert_eq!(outcome(&pod), None);
        pod.metadata.deletion_timestamp = Some(Time(now()));
        assert_eq!(outcome(&pod), Some(false));
    }
}
